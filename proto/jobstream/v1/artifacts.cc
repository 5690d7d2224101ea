#include "jobstream/v1/artifacts.h"

#include <openssl/evp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace jobstream::v1 {
namespace {

// Length of the UTF-8 sequence starting at s[i], or 0 if it is not valid there.
size_t Utf8Length(absl::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  // Overlong forms, surrogates and values past Unicode are not UTF-8.
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

bool IsTokenChar(char c) {
  // RFC 9110 token characters.
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

}  // namespace

absl::Status ValidateArtifactName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("the artifact name is empty");
  if (name.size() > kMaxArtifactName) {
    return absl::InvalidArgumentError(absl::StrCat("the artifact name is ", name.size(),
                                                   " bytes; the limit is ", kMaxArtifactName));
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("the artifact name \"", name, "\" is not a file name"));
  }
  for (size_t i = 0; i < name.size();) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c == '/' || c == '\\') {
      return absl::InvalidArgumentError(
          "the artifact name holds a \"/\" or \"\\\": it must be a plain file name");
    }
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("the artifact name holds control character 0x",
                       absl::Hex(c, absl::kZeroPad2), " at byte ", i));
    }
    const size_t n = Utf8Length(name, i);
    if (n == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the artifact name is not valid UTF-8 at byte ", i));
    }
    i += n;
  }
  return absl::OkStatus();
}

absl::Status ValidateContentType(absl::string_view type) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("content type \"", absl::CHexEscape(type.substr(0, 80)), "\" ", why));
  };
  if (type.size() > 255) return bad("is over 255 bytes");
  for (char c : type) {
    if (c < 0x20 || c > 0x7e) return bad("must be printable ASCII");
  }
  const size_t semi = type.find(';');
  absl::string_view essence = absl::StripAsciiWhitespace(type.substr(0, semi));
  const size_t slash = essence.find('/');
  if (slash == absl::string_view::npos || slash == 0 || slash + 1 == essence.size()) {
    return bad("is not of the form type/subtype");
  }
  for (size_t i = 0; i < essence.size(); ++i) {
    if (i != slash && !IsTokenChar(essence[i])) return bad("has a character a media type cannot");
  }
  return absl::OkStatus();
}

std::string GuessContentType(absl::string_view name) {
  static constexpr std::pair<absl::string_view, absl::string_view> kTypes[] = {
      {"png", "image/png"},        {"jpg", "image/jpeg"},        {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},        {"webp", "image/webp"},       {"svg", "image/svg+xml"},
      {"avif", "image/avif"},      {"mp4", "video/mp4"},         {"webm", "video/webm"},
      {"mov", "video/quicktime"},  {"mp3", "audio/mpeg"},        {"wav", "audio/wav"},
      {"ogg", "audio/ogg"},        {"pdf", "application/pdf"},   {"zip", "application/zip"},
      {"gz", "application/gzip"},  {"tar", "application/x-tar"}, {"json", "application/json"},
      {"csv", "text/csv"},         {"txt", "text/plain; charset=utf-8"},
      {"log", "text/plain; charset=utf-8"},                      {"md", "text/markdown"},
      {"html", "text/html"},       {"htm", "text/html"},         {"xml", "application/xml"},
      {"parquet", "application/vnd.apache.parquet"},
  };
  const size_t dot = name.rfind('.');
  if (dot == absl::string_view::npos || dot == 0) return "application/octet-stream";
  const std::string ext = absl::AsciiStrToLower(name.substr(dot + 1));
  for (const auto& [e, type] : kTypes) {
    if (e == ext) return std::string(type);
  }
  return "application/octet-stream";
}

struct Sha256::Ctx {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
}
Sha256::~Sha256() = default;

void Sha256::Update(absl::string_view data) {
  EVP_DigestUpdate(ctx_->md, data.data(), data.size());
}

std::string Sha256::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_->md, digest, &n);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), n));
}

bool IsSha256Hex(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace jobstream::v1
