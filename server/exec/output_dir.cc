#include "server/exec/output_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>

#include "absl/strings/str_cat.h"
#include "jobstream/v1/artifacts.h"

namespace jobstream::exec {

absl::StatusOr<std::unique_ptr<OutputDir>> OutputDir::Create(absl::string_view job_id,
                                                              int attempt) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                   "/jobstream-", job_id, "-", attempt, "-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot make an output directory ", templ, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<OutputDir>(new OutputDir(std::move(templ)));
}

OutputDir::~OutputDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);  // does not follow links out of it
}

absl::StatusOr<std::vector<OutputFile>> OutputDir::Files(std::vector<std::string>* skipped) const {
  DIR* dir = opendir(path_.c_str());
  if (dir == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot read output directory ", path_, ": ", std::strerror(errno)));
  }
  std::vector<OutputFile> files;
  absl::Status error;
  while (struct dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = absl::StrCat(path_, "/", name);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;  // gone meanwhile
    if (!S_ISREG(st.st_mode)) {
      skipped->push_back(absl::StrCat(
          name, S_ISDIR(st.st_mode) ? " (a directory: only files directly in it are uploaded)"
                : S_ISLNK(st.st_mode) ? " (a symbolic link: links are not followed)"
                                      : " (not a regular file)"));
      continue;
    }
    if (absl::Status s = v1::ValidateArtifactName(name); !s.ok()) {
      error = absl::InvalidArgumentError(
          absl::StrCat("output file \"", name.substr(0, 80), "\": ", s.message()));
      break;
    }
    files.push_back({name, path, static_cast<int64_t>(st.st_size)});
  }
  closedir(dir);
  if (!error.ok()) return error;
  std::sort(files.begin(), files.end(),
            [](const OutputFile& a, const OutputFile& b) { return a.name < b.name; });
  return files;
}

absl::Status ReadFileInPieces(const std::string& path, size_t piece,
                              const std::function<absl::Status(absl::string_view)>& fn) {
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::string buffer(piece, '\0');
  absl::Status status;
  for (;;) {
    const ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = absl::UnavailableError(absl::StrCat("reading ", path, ": ", std::strerror(errno)));
      break;
    }
    if (n == 0) break;
    status = fn(absl::string_view(buffer.data(), static_cast<size_t>(n)));
    if (!status.ok()) break;
  }
  close(fd);
  return status;
}

}  // namespace jobstream::exec
