// Point-to-point transfers between host leaders, timed by the reference leader of each pair (see
// coca/dist/link_check.h). Messages go on the collective communicator under a tag of their own:
// MPI keeps point-to-point traffic apart from collectives, and only leaders take part.
#include "coca/dist/link_check.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <thread>

#include "coca/dist/check.h"

namespace coca::dist {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kLinkTag = 0x4c4b;

// The buffers outlive any request a timeout leaves pending (the job is ending then anyway).
std::vector<char>& payload(size_t bytes) {
  static std::vector<char> buf;
  if (buf.size() < bytes) buf.assign(bytes, '\x5a');
  return buf;
}
char g_signal = 1;

// Waits for both requests under the communicator's timeout, answering liveness probes meanwhile.
void wait_both(const MpiCommunicator& comm, MPI_Request (&req)[2], int peer) {
  const auto start = Clock::now();
  for (int spin = 0;; ++spin) {
    comm.serve_probes();
    int done = 0;
    COCA_MPI_CHECK(MPI_Testall(2, req, &done, MPI_STATUSES_IGNORE));
    if (done) return;
    if (Clock::now() - start > comm.options().timeout)
      throw Error(str_cat("link check: rank ", peer, " (", comm.host_of(peer), ") did not answer rank ", comm.rank(),
                          " (", comm.host(), ") within ",
                          std::chrono::duration_cast<std::chrono::seconds>(comm.options().timeout).count(),
                          " s (the host, its link or the process is gone)"));
    if (spin > 1000) std::this_thread::yield();  // oversubscribed ranks: let the peer run
  }
}

// Sums `ms` over ranks. Waits asleep between polls: the ranks that are done (or never measured)
// leave the CPU to the leaders still timing transfers, which on an oversubscribed host would
// otherwise time the scheduler.
void sum_asleep(const MpiCommunicator& comm, std::vector<double>& ms) {
  MPI_Request req = MPI_REQUEST_NULL;
  COCA_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, ms.data(), static_cast<int>(ms.size()), MPI_DOUBLE, MPI_SUM, comm.comm(),
                                &req));
  const auto start = Clock::now();
  for (;;) {
    comm.serve_probes();
    int done = 0;
    COCA_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (Clock::now() - start > comm.options().timeout) {
      std::string who;
      for (const std::string& r : comm.silent_ranks(3.0)) who += (who.empty() ? "" : ", ") + r;
      throw Error(str_cat("link check: the sum of the timings timed out after ",
                          std::chrono::duration_cast<std::chrono::seconds>(comm.options().timeout).count(),
                          " s on rank ", comm.rank(), " (", comm.host(), "): ",
                          who.empty() ? std::string("every rank still answers") : "no answer from " + who));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// One transfer of `bytes` from `from` to `to`, answered by one byte; returns the seconds it took
// as seen by `timer` (one of the two), 0 on the other.
double transfer(const MpiCommunicator& comm, int from, int to, int timer, size_t bytes) {
  const MPI_Comm c = comm.comm();
  const int n = static_cast<int>(bytes);
  std::vector<char>& buf = payload(bytes);
  MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  const auto start = Clock::now();
  if (comm.rank() == timer) {
    // The timer starts the transfer: it sends the data, or a byte asking the peer to send it.
    const int peer = timer == from ? to : from;
    if (timer == from) {
      COCA_MPI_CHECK(MPI_Isend(buf.data(), n, MPI_BYTE, peer, kLinkTag, c, &req[0]));
      COCA_MPI_CHECK(MPI_Irecv(&g_signal, 1, MPI_BYTE, peer, kLinkTag, c, &req[1]));
    } else {
      COCA_MPI_CHECK(MPI_Isend(&g_signal, 1, MPI_BYTE, peer, kLinkTag, c, &req[0]));
      COCA_MPI_CHECK(MPI_Irecv(buf.data(), n, MPI_BYTE, peer, kLinkTag, c, &req[1]));
    }
    wait_both(comm, req, peer);
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  if (comm.rank() == from) {  // asked by the timer, then send
    COCA_MPI_CHECK(MPI_Irecv(&g_signal, 1, MPI_BYTE, to, kLinkTag, c, &req[0]));
    wait_both(comm, req, to);
    COCA_MPI_CHECK(MPI_Isend(buf.data(), n, MPI_BYTE, to, kLinkTag, c, &req[0]));
    wait_both(comm, req, to);
  } else {  // receive, then answer
    COCA_MPI_CHECK(MPI_Irecv(buf.data(), n, MPI_BYTE, from, kLinkTag, c, &req[0]));
    wait_both(comm, req, from);
    COCA_MPI_CHECK(MPI_Isend(&g_signal, 1, MPI_BYTE, from, kLinkTag, c, &req[0]));
    wait_both(comm, req, from);
  }
  return 0;
}

}  // namespace

LinkCheck check_links(MpiCommunicator& comm, const LinkCheckOptions& opts) {
  COCA_CHECK(opts.bytes > 0 && opts.bytes < (size_t{1} << 30) && opts.repeats > 0, "link check: ", opts.bytes,
             " bytes x ", opts.repeats, " repeats");
  const auto start = Clock::now();
  // One leader per host, in order of their first rank.
  std::vector<int> leader;
  for (int r = 0; r < comm.size(); ++r) {
    const bool seen = std::any_of(leader.begin(), leader.end(), [&](int l) { return comm.host_of(l) == comm.host_of(r); });
    if (!seen) leader.push_back(r);
  }
  const int hosts = static_cast<int>(leader.size());
  if (hosts < 2) {
    LinkCheck none;
    none.hosts = hosts;
    return none;
  }
  // (reference, other) host pairs, in the same order on every rank.
  std::vector<std::pair<int, int>> pairs;
  for (int h = 1; h < hosts; ++h) pairs.emplace_back(0, h);
  if (hosts >= 3)
    for (int h = 2; h < hosts; ++h) pairs.emplace_back(1, h);
  // ms[2 p]: reference -> other, ms[2 p + 1]: other -> reference, timed by the reference.
  // Static: outlives a reduction that a timeout leaves pending.
  static std::vector<double> ms;
  ms.assign(pairs.size() * 2, 0.0);
  double* m = ms.data();
  for (size_t p = 0; p < pairs.size(); ++p) {
    const int ref = leader[pairs[p].first], other = leader[pairs[p].second];
    if (comm.rank() != ref && comm.rank() != other) continue;
    double best[2] = {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
    for (int k = 0; k < opts.repeats; ++k) {
      best[0] = std::min(best[0], transfer(comm, ref, other, ref, opts.bytes));
      best[1] = std::min(best[1], transfer(comm, other, ref, ref, opts.bytes));
    }
    if (comm.rank() == ref) m[2 * p] = best[0] * 1e3, m[2 * p + 1] = best[1] * 1e3;
  }
  sum_asleep(comm, ms);  // every rank gets the timers' figures

  std::vector<LinkTransfer> t;
  for (size_t p = 0; p < pairs.size(); ++p) {
    t.push_back({pairs[p].first, pairs[p].second, m[2 * p]});
    t.push_back({pairs[p].second, pairs[p].first, m[2 * p + 1]});
  }
  std::vector<std::string> names;
  for (int l : leader) names.push_back(comm.host_of(l));
  LinkCheck out = judge_links(names, leader, t, opts);
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

LinkCheck judge_links(const std::vector<std::string>& hosts, const std::vector<int>& leaders,
                      const std::vector<LinkTransfer>& t, const LinkCheckOptions& opts) {
  const int n = static_cast<int>(hosts.size());
  COCA_CHECK(leaders.size() == hosts.size(), "judge_links: ", hosts.size(), " hosts but ", leaders.size(), " leaders");
  LinkCheck out;
  out.hosts = n;
  if (t.empty()) return out;
  const double inf = std::numeric_limits<double>::infinity();
  // Each host's fastest send and fastest receive: a host with one good link has a good score.
  std::vector<double> send(n, inf), recv(n, inf);
  for (const LinkTransfer& x : t) {
    COCA_CHECK(x.from >= 0 && x.from < n && x.to >= 0 && x.to < n && x.from != x.to, "judge_links: transfer ",
               x.from, " -> ", x.to, " among ", n, " hosts");
    send[x.from] = std::min(send[x.from], x.ms);
    recv[x.to] = std::min(recv[x.to], x.ms);
    out.max_ms = std::max(out.max_ms, x.ms);
  }
  out.transfers = static_cast<int>(t.size());
  // The baseline is the median score, the lower of an even count: one slow host holds 2 of the
  // 2 H scores (with two hosts, a slow sender and its receiver hold 2 of 4).
  std::vector<double> scores;
  for (int h = 0; h < n; ++h)
    for (double v : {send[h], recv[h]})
      if (v != inf) scores.push_back(v);
  std::sort(scores.begin(), scores.end());
  out.median_ms = scores[(scores.size() - 1) / 2];
  auto slow = [&](double v) { return v > opts.factor * out.median_ms && v - out.median_ms > opts.margin_ms; };
  std::fill(recv.begin(), recv.end(), inf);
  // A slow sender explains its slow transfers: its receivers are judged on the other senders.
  for (const LinkTransfer& x : t)
    if (!slow(send[x.from])) recv[x.to] = std::min(recv[x.to], x.ms);
  for (int h = 0; h < n; ++h) {
    if (send[h] != inf && slow(send[h])) out.slow.push_back({hosts[h], leaders[h], true, send[h]});
    else if (recv[h] != inf && slow(recv[h])) out.slow.push_back({hosts[h], leaders[h], false, recv[h]});
  }
  return out;
}

std::string describe(const SlowLink& s, const LinkCheck& c, const LinkCheckOptions& opts) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s (rank %d) takes %.0f ms to %s %zu KB, the median host %.1f ms",
                s.host.c_str(), s.rank, s.ms, s.sending ? "send" : "receive", opts.bytes / 1024, c.median_ms);
  return buf;
}

}  // namespace coca::dist
