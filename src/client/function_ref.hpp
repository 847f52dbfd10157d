#pragma once

// A non-owning reference to a callable (C++26's std::function_ref, reduced to what the
// library needs): two pointers, no allocation, one indirect call. It refers to the callable
// it was made from, so it must not outlive it; pass it down the stack, never store it.

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace steadypg::internal {

template <typename Signature>
class function_ref;

template <typename R, typename... Args>
class function_ref<R(Args...)> {
 public:
  /// Refers to `fn` (a lambda or another function object); `fn` must outlive this.
  // clang-format off
  template <typename Fn>
    requires(!std::is_same_v<std::remove_cvref_t<Fn>, function_ref> && std::is_invocable_r_v<R, Fn&, Args...>)
  function_ref(Fn&& fn) noexcept  // NOLINT(google-explicit-constructor): converts like std::function
      // clang-format on
      : m_callable(const_cast<void*>(static_cast<const void*>(std::addressof(fn)))),
        m_invoke([](void* callable, Args... args) -> R {
          auto& target = *static_cast<std::remove_reference_t<Fn>*>(callable);
          if constexpr (std::is_void_v<R>) {
            (void)std::invoke(target, std::forward<Args>(args)...);  // a result of the callable is dropped
          } else {
            return std::invoke(target, std::forward<Args>(args)...);
          }
        }) {}

  /// Calls the callable referred to.
  R operator()(Args... args) const { return m_invoke(m_callable, std::forward<Args>(args)...); }

 private:
  void* m_callable;
  R (*m_invoke)(void*, Args...);
};

}  // namespace steadypg::internal
