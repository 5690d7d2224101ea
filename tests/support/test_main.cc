// The main of every gtest binary here. The tests' temporary files, and whatever the
// processes they start leave when a test kills them (kill -9 is how many tests end a
// server, whose running programs' output directories then stay), go under one directory
// of this run — $TMPDIR for the tests and every process they start — removed at exit.
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string run = (std::filesystem::temp_directory_path() / "jobstream-run-XXXXXX").string();
  if (mkdtemp(run.data()) == nullptr) {
    perror("jobstream tests: mkdtemp");
    return 1;
  }
  chmod(run.c_str(), 0711);  // PostgreSQL's own user reaches its data dir inside
  setenv("TMPDIR", run.c_str(), 1);
  const int result = RUN_ALL_TESTS();
  std::error_code ignored;
  std::filesystem::remove_all(run, ignored);
  return result;
}
