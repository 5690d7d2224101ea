// Artifact names, content types and SHA-256, as every component checks them.
#include "jobstream/v1/artifacts.h"

#include "gtest/gtest.h"

namespace jobstream::v1 {
namespace {

TEST(ArtifactNameTest, PlainFileNamesOnly) {
  for (const std::string& ok : {std::string("report.pdf"), std::string("r\xc3\xa9sum\xc3\xa9 2.txt"),
                                std::string(255, 'a'), std::string("..hidden"), std::string("a b")}) {
    EXPECT_TRUE(ValidateArtifactName(ok).ok()) << ok;
  }
  for (const std::string& bad :
       {std::string(""), std::string("."), std::string(".."), std::string("a/b"),
        std::string("/etc"), std::string("a\\b"), std::string("x\0y", 3), std::string("tab\there"),
        std::string("del\x7f"), std::string(256, 'a'), std::string("\xff\xfe"),
        std::string("\xc0\xaf"), std::string("\xed\xa0\x80")}) {
    EXPECT_FALSE(ValidateArtifactName(bad).ok()) << bad;
  }
}

TEST(ContentTypeTest, MediaTypesAndGuesses) {
  EXPECT_TRUE(ValidateContentType("image/png").ok());
  EXPECT_TRUE(ValidateContentType("text/plain; charset=utf-8").ok());
  EXPECT_TRUE(ValidateContentType("application/vnd.api+json").ok());
  for (const char* bad : {"png", "image/", "/png", "image png", "image/p\x01ng", "a/b/c"}) {
    EXPECT_FALSE(ValidateContentType(bad).ok()) << bad;
  }
  EXPECT_EQ(GuessContentType("clip.MP4"), "video/mp4");
  EXPECT_EQ(GuessContentType("plot.png"), "image/png");
  EXPECT_EQ(GuessContentType("data.tar.gz"), "application/gzip");
  EXPECT_EQ(GuessContentType("README"), "application/octet-stream");
  EXPECT_EQ(GuessContentType(".bashrc"), "application/octet-stream");
}

TEST(Sha256Test, KnownDigestsStreamed) {
  Sha256 empty;
  EXPECT_EQ(empty.HexDigest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 abc;
  abc.Update("a");
  abc.Update("bc");
  EXPECT_EQ(abc.HexDigest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(IsSha256Hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  EXPECT_FALSE(IsSha256Hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
  EXPECT_FALSE(IsSha256Hex("abc"));
}

}  // namespace
}  // namespace jobstream::v1
