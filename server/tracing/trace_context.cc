#include "server/tracing/trace_context.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/tracing/ids.h"

namespace jobstream::tracing {
namespace {

// IdBytes on an absl::string_view (Debian's absl has its own, not std's).
template <size_t N>
bool IdBytesOf(absl::string_view hex, std::array<char, N>& out) {
  return IdBytes(std::string_view(hex.data(), hex.size()), out);
}

// A W3C id: lower-case hex of N bytes, not all zero.
template <size_t N>
bool ValidId(absl::string_view hex) {
  std::array<char, N> bytes{};
  return IdBytesOf(hex, bytes) &&
         std::any_of(bytes.begin(), bytes.end(), [](char b) { return b != 0; });
}

// A thread's own generator, seeded from the OS's entropy: W3C asks for random ids, and
// OpenSSL's RAND_bytes (locked, reseeded) cost a Submit more than all else tracing does.
std::string RandomHex(size_t bytes) {
  thread_local absl::BitGen gen;
  char raw[16];
  do {
    for (size_t i = 0; i < bytes; i += 8) {
      const uint64_t r = absl::Uniform<uint64_t>(gen);
      std::memcpy(raw + i, &r, std::min<size_t>(8, bytes - i));
    }
  } while (std::all_of(raw, raw + bytes, [](char c) { return c == 0; }));  // all zero: invalid
  return absl::BytesToHexString(absl::string_view(raw, bytes));
}

// 16 hex digits from sha256 of the job's span and a tag: stable (every server derives
// the same), and as good as random. The digest is fetched once and each thread keeps its
// context: OpenSSL 3's one-shot SHA256() looks the algorithm up on every call.
std::string DerivedSpanId(const v1::TraceContext& job, absl::string_view tag, int attempt) {
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(
      EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  char number[16];
  const int number_size = std::snprintf(number, sizeof number, "%d", attempt);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (sha256 == nullptr || ctx == nullptr || !EVP_DigestInit_ex2(ctx.get(), sha256, nullptr) ||
      !EVP_DigestUpdate(ctx.get(), job.trace_id().data(), job.trace_id().size()) ||
      !EVP_DigestUpdate(ctx.get(), job.span_id().data(), job.span_id().size()) ||
      !EVP_DigestUpdate(ctx.get(), tag.data(), tag.size()) ||
      !EVP_DigestUpdate(ctx.get(), number, static_cast<size_t>(number_size)) ||
      !EVP_DigestFinal_ex(ctx.get(), digest, &digest_size)) {
    // Not expected of a working OpenSSL; the one-shot call computes the same digest.
    const std::string input = absl::StrCat(job.trace_id(), job.span_id(), tag, attempt);
    SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  }
  if (std::all_of(digest, digest + 8, [](unsigned char b) { return b == 0; })) digest[7] = 1;
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 8));
}

}  // namespace

std::optional<SpanContext> ParseTraceparent(absl::string_view header) {
  header = absl::StripAsciiWhitespace(header);
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55.
  if (header.size() < 55 || header[2] != '-' || header[35] != '-' || header[52] != '-') {
    return std::nullopt;
  }
  const absl::string_view version = header.substr(0, 2);
  if (!absl::ascii_isxdigit(version[0]) || !absl::ascii_isxdigit(version[1]) || version == "ff") {
    return std::nullopt;
  }
  if (version == "00" && header.size() != 55) return std::nullopt;
  if (header.size() > 55 && header[55] != '-') return std::nullopt;
  SpanContext context;
  context.trace_id = std::string(header.substr(3, 32));
  context.span_id = std::string(header.substr(36, 16));
  const absl::string_view flags = header.substr(53, 2);
  if (!ValidId<16>(context.trace_id) || !ValidId<8>(context.span_id) ||
      !absl::ascii_isxdigit(flags[0]) || !absl::ascii_isxdigit(flags[1])) {
    return std::nullopt;
  }
  const int low = absl::ascii_isdigit(flags[1]) ? flags[1] - '0' : (flags[1] | 0x20) - 'a' + 10;
  context.sampled = (low & 1) != 0;
  return context;
}

std::string FormatTraceparent(const SpanContext& context) {
  return absl::StrCat("00-", context.trace_id, "-", context.span_id,
                      context.sampled ? "-01" : "-00");
}

namespace {
std::atomic<double> root_sample_ratio{1.0};
}  // namespace

void SetRootSampleRatio(double ratio) { root_sample_ratio = std::clamp(ratio, 0.0, 1.0); }

bool SampledRoot(absl::string_view trace_id) {
  const double ratio = root_sample_ratio.load(std::memory_order_relaxed);
  if (ratio >= 1.0) return true;
  TraceIdBytes id;
  if (ratio <= 0.0 || !IdBytesOf(trace_id, id)) return false;
  uint64_t low = 0;  // the last 7 bytes: the 56 bits W3C has random
  for (size_t i = id.size() - 7; i < id.size(); ++i) {
    low = low << 8 | static_cast<uint8_t>(id[i]);
  }
  return static_cast<double>(low) < ratio * static_cast<double>(uint64_t{1} << 56);
}

v1::TraceContext NewJobTrace(const std::optional<SpanContext>& parent) {
  v1::TraceContext trace;
  trace.set_trace_id(parent ? parent->trace_id : RandomHex(16));
  trace.set_span_id(RandomHex(8));
  if (parent) trace.set_parent_span_id(parent->span_id);
  trace.set_sampled(parent ? parent->sampled : SampledRoot(trace.trace_id()));
  return trace;
}

std::string AttemptSpanId(const v1::TraceContext& job, int attempt) {
  return DerivedSpanId(job, "attempt", attempt);
}

std::string WaitSpanId(const v1::TraceContext& job, int attempt) {
  return DerivedSpanId(job, "wait", attempt);
}

std::string AttemptTraceparent(const v1::TraceContext& job, int attempt) {
  if (job.trace_id().empty()) return "";
  return FormatTraceparent({job.trace_id(), AttemptSpanId(job, attempt), job.sampled()});
}

}  // namespace jobstream::tracing
