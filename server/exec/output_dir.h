// OutputDir: the fresh directory one attempt of a program gets as $JOBSTREAM_OUTPUT_DIR.
// Every regular file the program leaves directly in it becomes an artifact of the job
// (uploaded by the exec runner or `jobstream work` once the program succeeds). It is
// removed, with whatever is in it, when the OutputDir goes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace jobstream::exec {

struct OutputFile {
  std::string name;  // the artifact name: the file's name
  std::string path;
  int64_t size = 0;
};

class OutputDir {
 public:
  // A new directory under $TMPDIR (else /tmp), named for the job and attempt.
  static absl::StatusOr<std::unique_ptr<OutputDir>> Create(absl::string_view job_id, int attempt);
  ~OutputDir();

  const std::string& path() const { return path_; }

  // The regular files directly in the directory, by name. Anything else (a directory, a
  // symbolic link — never followed — a pipe) is left out and described in `skipped`.
  // INVALID_ARGUMENT names a file whose name cannot be an artifact's.
  absl::StatusOr<std::vector<OutputFile>> Files(std::vector<std::string>* skipped) const;

 private:
  explicit OutputDir(std::string path) : path_(std::move(path)) {}
  const std::string path_;
};

// Reads `file` in pieces of up to `piece` bytes, calling fn for each, without following a
// symbolic link put in its place. Stops at fn's first error.
absl::Status ReadFileInPieces(const std::string& path, size_t piece,
                              const std::function<absl::Status(absl::string_view)>& fn);

}  // namespace jobstream::exec
