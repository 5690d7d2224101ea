#include "server/jobs/ids.h"

#include <set>

#include "gtest/gtest.h"

namespace jobstream::jobs {
namespace {

TEST(IdsTest, NewIdsAreValidUniqueAndSortByTime) {
  std::string previous;
  std::set<std::string> seen;
  const absl::Time t0 = absl::FromUnixMillis(1'700'000'000'000);
  for (int i = 0; i < 10000; ++i) {
    // Many ids in one millisecond, and a clock that goes back once.
    absl::Time now = t0 + absl::Milliseconds(i / 1000) - (i == 5000 ? absl::Seconds(1) : absl::ZeroDuration());
    std::string id = NewJobId(now);
    ASSERT_TRUE(ValidateJobId(id).ok()) << id;
    ASSERT_GT(id, previous);
    seen.insert(id);
    previous = id;
  }
  EXPECT_EQ(seen.size(), 10000u);
  const std::string earlier = NewJobId(absl::FromUnixMillis(1'800'000'000'000));
  EXPECT_LT(earlier, NewJobId(absl::FromUnixMillis(1'900'000'000'000)));
}

TEST(IdsTest, RejectsMalformedIdsWithAReason) {
  EXPECT_EQ(ValidateJobId("").message(), "job_id is required");
  EXPECT_NE(ValidateJobId("abc").message().find("has 26 characters, not 3"), std::string::npos);
  EXPECT_NE(ValidateJobId(std::string(100000, 'a')).message().find("not 100000"), std::string::npos);
  EXPECT_LT(ValidateJobId(std::string(100000, 'a')).message().size(), 200u) << "no echo of huge input";
  EXPECT_FALSE(ValidateJobId("01M81RD5KQ5G91QM659EQTS4BN").ok()) << "upper case";
  EXPECT_FALSE(ValidateJobId("01m81rd5kq5g91qm659eqts4bu").ok()) << "u is not Crockford";
  EXPECT_FALSE(ValidateJobId("../../etc/passwd0000000000").ok());
  EXPECT_FALSE(ValidateJobId(std::string("01m81rd5kq5g91qm659eqts4b\0", 26)).ok());
  EXPECT_FALSE(ValidateJobId("zzzzzzzzzzzzzzzzzzzzzzzzzz").ok()) << "beyond 128 bits";
  EXPECT_TRUE(ValidateJobId("01m81rd5kq5g91qm659eqts4bn").ok());
}

}  // namespace
}  // namespace jobstream::jobs
