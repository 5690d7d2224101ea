// WebhookPolicy: which URLs may be called, and which events a webhook gets.
#include "server/webhooks/webhook_policy.h"

#include "server/storage/deliveries.h"

#include "gtest/gtest.h"

namespace jobstream::webhooks {
namespace {

TEST(WebhookPolicyTest, OnlyListedHostsAndPorts) {
  auto policy = WebhookPolicy::Parse({"hooks.example.com", "127.0.0.1:9000", "[::1]:8443"});
  ASSERT_TRUE(policy.ok()) << policy.status();
  auto target = policy->Check("https://Hooks.Example.com/jobs?x=1");
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_TRUE(target->tls);
  EXPECT_EQ(target->host, "hooks.example.com");
  EXPECT_EQ(target->port, "443");
  EXPECT_EQ(target->target, "/jobs?x=1");
  EXPECT_TRUE(policy->Check("http://hooks.example.com:8080").ok());  // a host alone: any port
  EXPECT_EQ(policy->Check("http://hooks.example.com:8080")->target, "/");
  EXPECT_TRUE(policy->Check("http://127.0.0.1:9000/h").ok());
  EXPECT_FALSE(policy->Check("http://127.0.0.1:9001/h").ok());  // host:port: that port only
  EXPECT_FALSE(policy->Check("http://127.0.0.1/h").ok());
  EXPECT_TRUE(policy->Check("https://[::1]:8443/").ok());
  for (const char* bad : {"http://localhost:9000/", "http://hooks.example.com.evil.net/",
                          "http://user@hooks.example.com/", "ftp://hooks.example.com/",
                          "https://hooks.example.com/#x", "hooks.example.com/path", "",
                          "http://hooks.example.com:0/", "http://hooks.example.com:99999/"}) {
    EXPECT_FALSE(policy->Check(bad).ok()) << bad;
  }
  EXPECT_FALSE(policy->Check("http://hooks.example.com/" + std::string(3000, 'a')).ok());
}

TEST(WebhookPolicyTest, NoListRefusesEverythingAndBadEntriesFailToParse) {
  auto none = WebhookPolicy::Parse({});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->enabled());
  EXPECT_FALSE(none->Check("http://127.0.0.1/").ok());
  for (const char* bad : {"user@host", "host:0", "host:abc", "host:70000", "a b"}) {
    EXPECT_FALSE(WebhookPolicy::Parse({bad}).ok()) << bad;
  }
}

TEST(WebhookPolicyTest, EventsDefaultToTheTerminalOnesAndNeverProgress) {
  v1::Webhook hook;
  EXPECT_TRUE(storage::WantsDelivery(hook, v1::JobEvent::SUCCEEDED));
  EXPECT_TRUE(storage::WantsDelivery(hook, v1::JobEvent::CANCELLED));
  EXPECT_FALSE(storage::WantsDelivery(hook, v1::JobEvent::STARTED));
  hook.add_events("started");
  hook.add_events("artifact");
  EXPECT_TRUE(storage::WantsDelivery(hook, v1::JobEvent::STARTED));
  EXPECT_TRUE(storage::WantsDelivery(hook, v1::JobEvent::ARTIFACT));
  EXPECT_FALSE(storage::WantsDelivery(hook, v1::JobEvent::SUCCEEDED));
  EXPECT_FALSE(storage::WantsDelivery(hook, v1::JobEvent::PROGRESS));
  auto policy = WebhookPolicy::Parse({"h"});
  hook.set_url("http://h/");
  EXPECT_TRUE(policy->Validate(hook).ok());
  hook.add_events("progress");
  EXPECT_FALSE(policy->Validate(hook).ok());
}

}  // namespace
}  // namespace jobstream::webhooks
