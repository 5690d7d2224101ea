// W3C trace and span ids as their bytes, and the one reading of their lower-case hex that
// parsing a traceparent, head sampling and encoding spans share.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace jobstream::tracing {

using TraceIdBytes = std::array<char, 16>;
using SpanIdBytes = std::array<char, 8>;

// The bytes a W3C id's lower-case hex digits stand for (false, and `out` unchanged, if
// `hex` is not 2 * N such digits).
template <size_t N>
bool IdBytes(std::string_view hex, std::array<char, N>& out) {
  if (hex.size() != 2 * N) return false;
  auto nibble = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  std::array<char, N> bytes;
  for (size_t i = 0; i < N; ++i) {
    const int high = nibble(hex[2 * i]), low = nibble(hex[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    bytes[i] = static_cast<char>(high << 4 | low);
  }
  out = bytes;
  return true;
}

}  // namespace jobstream::tracing
