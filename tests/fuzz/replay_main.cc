// A main() for the fuzz targets in ordinary builds: runs LLVMFuzzerTestOneInput over every
// file of the given corpus directories once, so the seeds (and every crash ever found,
// kept there) are regression tests of each `ctest` run, even without clang.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  int inputs = 0;
  for (int i = 1; i < argc; ++i) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(argv[i])) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++inputs;
    }
  }
  std::cout << "ran " << inputs << " inputs\n";
  return inputs > 0 ? 0 : 1;  // an empty corpus is a mistake
}
