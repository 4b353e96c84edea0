// eoe: the command line of the eoe runtime.

#include "experts/base/utf8.hpp"
#include "tools/eoe/commands.hpp"

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"eoe: Ensemble-of-Experts and Mesh-of-Experts on actors"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "eoe 0.1.0");
  eoe::cli::add_inspect(app);
  eoe::cli::add_init(app);
  eoe::cli::add_forward(app);
  eoe::cli::add_train(app);
  eoe::cli::add_eval(app);
  eoe::cli::add_generate(app);
  eoe::cli::add_cluster_commands(app);
  eoe::cli::add_ctl(app);
  eoe::cli::add_bench(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const eoe::cli::command_error& e) {
    // Messages may quote a path or a value of a file: bytes that are not UTF-8 escaped.
    std::cerr << "eoe: " << eoe::experts::escape_invalid_utf8(e.message) << "\n";
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "eoe: internal error: " << eoe::experts::escape_invalid_utf8(e.what()) << "\n";
    return 2;
  } catch (...) {
    // The last resort: no input ends this process with "terminate called after throwing".
    std::cerr << "eoe: internal error: an exception that is not a std::exception\n";
    return 2;
  }
  return 0;
}
