// The web page's files, compiled into the gateway (see embed_web.cmake): no CDN, no files
// to install, no path from a request ever reaches the filesystem.
#pragma once

#include <cstddef>

#include "absl/strings/string_view.h"

namespace jobstream::gateway {

struct WebAsset {
  const char* path;          // "/" or "/static/NAME"
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

// The file served at `path`, or nullptr.
const WebAsset* FindWebAsset(absl::string_view path);

}  // namespace jobstream::gateway
