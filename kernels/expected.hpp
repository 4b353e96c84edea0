#pragma once
// eoe::basic_expected and eoe::unexpected: std::expected and std::unexpected where the
// standard library has them (g++ 12 in C++23 mode), and a small equivalent where it does not
// (clang 14 over libstdc++ 12, the compiler of the fuzz targets): value or error, operator bool,
// *, ->, value(), error(), and the void specialisation. Only what the project uses.

#include <version>

#if defined(__cpp_lib_expected)

#include <expected>

namespace eoe {

template <class T, class E>
using basic_expected = std::expected<T, E>;
template <class E>
using unexpected = std::unexpected<E>;

} // namespace eoe

#else

#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

namespace eoe {

template <class E>
class unexpected {
public:
  explicit unexpected(E e) : e_(std::move(e)) {}
  const E& error() const& noexcept {
    return e_;
  }
  E& error() & noexcept {
    return e_;
  }
  E&& error() && noexcept {
    return std::move(e_);
  }

private:
  E e_;
};

template <class E>
unexpected(E) -> unexpected<E>;

template <class T, class E>
class basic_expected {
public:
  basic_expected() requires std::is_default_constructible_v<T> : v_(std::in_place_index<0>) {}
  template <class U = T>
    requires std::is_constructible_v<T, U&&>
             && (!std::is_same_v<std::remove_cvref_t<U>, basic_expected>)
             && (!std::is_same_v<std::remove_cvref_t<U>, unexpected<E>>)
  basic_expected(U&& x) : v_(std::in_place_index<0>, std::forward<U>(x)) {}
  template <class G>
  basic_expected(const unexpected<G>& u) : v_(std::in_place_index<1>, u.error()) {}
  template <class G>
  basic_expected(unexpected<G>&& u) : v_(std::in_place_index<1>, std::move(u).error()) {}

  bool has_value() const noexcept {
    return v_.index() == 0;
  }
  explicit operator bool() const noexcept {
    return has_value();
  }
  T& operator*() & {
    return std::get<0>(v_);
  }
  const T& operator*() const& {
    return std::get<0>(v_);
  }
  T&& operator*() && {
    return std::get<0>(std::move(v_));
  }
  T* operator->() {
    return &std::get<0>(v_);
  }
  const T* operator->() const {
    return &std::get<0>(v_);
  }
  T& value() & {
    check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check();
    return std::get<0>(v_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(v_));
  }
  E& error() & {
    return std::get<1>(v_);
  }
  const E& error() const& {
    return std::get<1>(v_);
  }
  E&& error() && {
    return std::get<1>(std::move(v_));
  }

private:
  void check() const {
    if (!has_value())
      throw std::logic_error("eoe::basic_expected::value() on an error");
  }
  std::variant<T, E> v_;
};

template <class E>
class basic_expected<void, E> {
public:
  basic_expected() = default;
  template <class G>
  basic_expected(const unexpected<G>& u) : e_(u.error()), ok_(false) {}
  template <class G>
  basic_expected(unexpected<G>&& u) : e_(std::move(u).error()), ok_(false) {}

  bool has_value() const noexcept {
    return ok_;
  }
  explicit operator bool() const noexcept {
    return ok_;
  }
  void operator*() const noexcept {}
  const E& error() const& {
    return e_;
  }
  E& error() & {
    return e_;
  }

private:
  E e_{};
  bool ok_ = true;
};

} // namespace eoe

#endif
