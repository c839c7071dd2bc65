// judge_links, the link check's judgement on measured transfers (coca/dist/link_check.h): the
// slow host is named and no other, whichever host it is and whichever direction is slow; an even
// network, or one link slow both ways between only two hosts, names nobody.
#include <gtest/gtest.h>

#include "coca/dist/link_check.h"

using namespace coca::dist;

namespace {

// Transfers as check_links makes them: both directions between host 0 and every other host, and
// with 3 or more hosts between host 1 and hosts 2.., each `fast` ms unless `ms` says otherwise.
std::vector<LinkTransfer> measured(int hosts, double fast, double (*ms)(int from, int to, double fast)) {
  std::vector<LinkTransfer> t;
  auto pair = [&](int a, int b) {
    t.push_back({a, b, ms(a, b, fast)});
    t.push_back({b, a, ms(b, a, fast)});
  };
  for (int h = 1; h < hosts; ++h) pair(0, h);
  if (hosts >= 3)
    for (int h = 2; h < hosts; ++h) pair(1, h);
  return t;
}

LinkCheck judge(int hosts, double (*ms)(int, int, double)) {
  std::vector<std::string> names;
  std::vector<int> leaders;
  for (int h = 0; h < hosts; ++h) names.push_back("node" + std::to_string(h + 1)), leaders.push_back(2 * h);
  return judge_links(names, leaders, measured(hosts, 0.3, ms));
}

std::string named(const LinkCheck& c) {
  std::string s;
  for (const SlowLink& l : c.slow) s += (s.empty() ? "" : ",") + l.host + (l.sending ? ":send" : ":receive");
  return s;
}

}  // namespace

TEST(LinkCheck, EvenNetworkNamesNobody) {
  for (int hosts : {2, 3, 4, 8}) {
    // Jitter up to 10x the fastest, below the margin: not a slow link.
    const LinkCheck c = judge(hosts, [](int from, int to, double fast) { return fast * (1 + (from * 7 + to * 3) % 10); });
    EXPECT_EQ(named(c), "") << hosts << " hosts";
    EXPECT_EQ(c.hosts, hosts);
  }
}

TEST(LinkCheck, TwoHostsNameTheSlowSender) {
  // node2's outgoing traffic shaped (tc tbf on its interface): only node2 -> node1 is slow.
  LinkCheck c = judge(2, [](int from, int, double fast) { return from == 1 ? 104.0 : fast; });
  EXPECT_EQ(named(c), "node2:send");
  EXPECT_EQ(c.slow.at(0).rank, 2);
  EXPECT_DOUBLE_EQ(c.slow.at(0).ms, 104.0);
  EXPECT_DOUBLE_EQ(c.median_ms, 0.3);
  EXPECT_EQ(describe(c.slow.at(0), c), "node2 (rank 2) takes 104 ms to send 64 KB, the median host 0.3 ms");
  c = judge(2, [](int from, int, double fast) { return from == 0 ? 104.0 : fast; });
  EXPECT_EQ(named(c), "node1:send");
}

TEST(LinkCheck, TwoHostsCannotJudgeALinkSlowBothWays) {
  EXPECT_EQ(named(judge(2, [](int, int, double) { return 104.0; })), "");
}

TEST(LinkCheck, ThreeOrMoreHostsNameTheSlowHostWhicheverItIs) {
  // Slow both ways, on a reference host (0, 1) or another (2, last).
  for (int hosts : {3, 4, 6}) {
    for (int slow : {0, 1, 2, hosts - 1}) {
      static int s;
      s = slow;
      const LinkCheck c = judge(hosts, [](int from, int to, double fast) { return from == s || to == s ? 90.0 : fast; });
      EXPECT_EQ(named(c), "node" + std::to_string(slow + 1) + ":send") << hosts << " hosts, slow " << slow;
    }
  }
}

TEST(LinkCheck, ASlowReceiverIsNamedForReceiving) {
  // Only what node3 receives is slow (its inbound shaped): named for receiving, alone.
  const LinkCheck c = judge(4, [](int, int to, double fast) { return to == 2 ? 90.0 : fast; });
  EXPECT_EQ(named(c), "node3:receive");
}

TEST(LinkCheck, OneHostMeasuresNothing) {
  const LinkCheck c = judge_links({"node1"}, {0}, {});
  EXPECT_EQ(c.hosts, 1);
  EXPECT_TRUE(c.slow.empty());
}
