#pragma once
// One line that says what machine a benchmark ran on.

#include <Eigen/Core>

#include <fstream>
#include <string>
#include <thread>

namespace eoe::bench {

inline std::string machine_line() {
  std::string cpu = "unknown CPU";
  std::ifstream in{"/proc/cpuinfo"};
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  return cpu + ", " + std::to_string(std::thread::hardware_concurrency()) + " hardware threads, "
         + "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION)
         + "." + std::to_string(EIGEN_MINOR_VERSION) + " using " + std::to_string(Eigen::nbThreads())
         + " thread(s)";
}

} // namespace eoe::bench
