// TensorBoard event files, read back with a reader written here from the format's definition
// (its own CRC32C, bit by bit, and its own protobuf decoding), not with the writer's code:
// both CRCs of every record must check, and wall_time, step, tags and values must round-trip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "coca/tensor/error.h"
#include "coca/train/options.h"
#include "coca/train/tensorboard.h"

using namespace coca::train;
namespace fs = std::filesystem;

namespace {

// ---- an independent reader -----------------------------------------------------------------

uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t c = ~0u;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}
uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

uint64_t read_le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

// The records of a TFRecord file; every CRC is checked (a failure names the record).
std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string file = ss.str();
  std::vector<std::string> out;
  size_t at = 0;
  while (at < file.size()) {
    if (at + 12 > file.size()) {
      ADD_FAILURE() << path << ": record " << out.size() << " header cut short";
      break;
    }
    const uint64_t len = read_le(file, at, 8);
    EXPECT_EQ(read_le(file, at + 8, 4), masked(crc32c_bitwise(file.substr(at, 8))))
        << path << ": record " << out.size() << " length CRC";
    if (at + 12 + len + 4 > file.size()) {
      ADD_FAILURE() << path << ": record " << out.size() << " data cut short";
      break;
    }
    const std::string data = file.substr(at + 12, len);
    EXPECT_EQ(read_le(file, at + 12 + len, 4), masked(crc32c_bitwise(data)))
        << path << ": record " << out.size() << " data CRC";
    out.push_back(data);
    at += 12 + len + 4;
  }
  return out;
}

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  int session_status = -1;  // -1: no session_log
  std::vector<std::pair<std::string, float>> values;
};

struct Cursor {
  const std::string& s;
  size_t at;
  size_t end;
  bool ok = true;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && at < end; shift += 7) {
      const auto b = static_cast<unsigned char>(s[at++]);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    return 0;
  }
  std::string bytes() {
    const uint64_t n = varint();
    if (at + n > end) {
      ok = false;
      return "";
    }
    std::string out = s.substr(at, n);
    at += n;
    return out;
  }
};

Event decode_event(const std::string& data) {
  Event e;
  Cursor c{data, 0, data.size()};
  while (c.ok && c.at < c.end) {
    const uint64_t key = c.varint();
    const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    if (field == 1 && wire == 1) {
      const uint64_t bits = read_le(data, c.at, 8);
      std::memcpy(&e.wall_time, &bits, 8);
      c.at += 8;
    } else if (field == 2 && wire == 0) {
      e.step = static_cast<int64_t>(c.varint());
    } else if (field == 3 && wire == 2) {
      e.file_version = c.bytes();
    } else if (field == 5 && wire == 2) {
      const std::string summary = c.bytes();
      Cursor sc{summary, 0, summary.size()};
      while (sc.ok && sc.at < sc.end) {
        if (sc.varint() != ((1 << 3) | 2)) ADD_FAILURE() << "Summary: a field other than value=1";
        const std::string value = sc.bytes();
        Cursor vc{value, 0, value.size()};
        std::pair<std::string, float> tv;
        while (vc.ok && vc.at < vc.end) {
          const uint64_t vkey = vc.varint();
          if (vkey == ((1 << 3) | 2)) {
            tv.first = vc.bytes();
          } else if (vkey == ((2 << 3) | 5)) {
            const auto bits = static_cast<uint32_t>(read_le(value, vc.at, 4));
            std::memcpy(&tv.second, &bits, 4);
            vc.at += 4;
          } else {
            ADD_FAILURE() << "Summary.Value: unexpected key " << vkey;
            vc.ok = false;
          }
        }
        EXPECT_TRUE(vc.ok);
        e.values.push_back(tv);
      }
      EXPECT_TRUE(sc.ok);
    } else if (field == 7 && wire == 2) {
      const std::string log = c.bytes();
      Cursor lc{log, 0, log.size()};
      EXPECT_EQ(lc.varint(), (1u << 3) | 0) << "SessionLog: status=1 first";
      e.session_status = static_cast<int>(lc.varint());
    } else {
      ADD_FAILURE() << "Event: unexpected field " << field << " wire type " << wire;
      break;
    }
  }
  EXPECT_TRUE(c.ok) << "Event cut short";
  return e;
}

fs::path temp_dir(const std::string& what) {
  const fs::path d = fs::temp_directory_path() / ("coca-tb-" + what + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

// ---- the tests -----------------------------------------------------------------------------------

TEST(TensorBoard, Crc32cKnownAnswer) {
  // The CRC-32C check value of the ASCII digits 1..9 (RFC 3720, iSCSI).
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c_bitwise("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(mask_crc32c(0), 0xa282ead8u);
}

TEST(TensorBoard, EventBytesFollowTheProtobufWireFormat) {
  // Worked by hand: wall_time 1.5 (fixed64 0x3FF8000000000000), step 3, one value "a" = 2.0f.
  const std::string expect = std::string("\x09\x00\x00\x00\x00\x00\x00\xF8\x3F", 9) + "\x10\x03" +
                             std::string("\x2A\x0A\x0A\x08\x0A\x01" "a" "\x15\x00\x00\x00\x40", 12);
  EXPECT_EQ(encode_scalars_event(1.5, 3, {{"a", 2.0f}}), expect);
  // file_version at step 0: the step field is left out (proto3 default).
  EXPECT_EQ(encode_file_version_event(0.0), std::string("\x09\0\0\0\0\0\0\0\0\x1A\x0D" "brain.Event:2", 24));
  // SessionLog START (status 1) at step 300 (varint AC 02).
  EXPECT_EQ(encode_session_start_event(0.0, 300), std::string("\x09\0\0\0\0\0\0\0\0\x10\xAC\x02\x3A\x02\x08\x01", 16));
}

TEST(TensorBoard, RecordsRoundTripThroughAnIndependentReader) {
  const fs::path dir = temp_dir("roundtrip");
  const std::string path = (dir / "events.out.tfevents.1.test").string();
  struct Rec {
    double wall;
    int64_t step;
    Scalars values;
  };
  const std::vector<Rec> recs = {
      {1764560000.125, 1, {{"train/loss", 9.875f}, {"train/lr", 1e-4f}}},
      {1764560001.5, 2, {{"train/loss", -0.3f}}},
      {1764560002.0, int64_t(1) << 40, {{"zeroshot/top1", 0.5f}, {"zeroshot/top5", 1.0f}, {"zeroshot/epoch", 3}}},
      {1764560003.75, 0, {{"a/tag with spaces and a long name to pass 127 bytes in the value message: "
                           "0123456789012345678901234567890123456789012345678901234567890123456789",
                           3.25f}}},
  };
  const double before = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  {
    EventFileWriter w(path, 7);
    for (const Rec& r : recs) w.write_scalars(r.wall, r.step, r.values);
  }
  const std::vector<std::string> raw = read_records(path);
  ASSERT_EQ(raw.size(), recs.size() + 2);
  const Event head = decode_event(raw[0]);
  EXPECT_EQ(head.file_version, "brain.Event:2");
  EXPECT_EQ(head.step, 0);
  EXPECT_GE(head.wall_time, before - 1);
  EXPECT_LE(head.wall_time, before + 60);
  const Event start = decode_event(raw[1]);
  EXPECT_EQ(start.session_status, 1);
  EXPECT_EQ(start.step, 7);
  EXPECT_TRUE(start.values.empty());
  for (size_t i = 0; i < recs.size(); ++i) {
    const Event e = decode_event(raw[i + 2]);
    EXPECT_EQ(e.wall_time, recs[i].wall) << "record " << i;
    EXPECT_EQ(e.step, recs[i].step) << "record " << i;
    EXPECT_EQ(e.file_version, "");
    EXPECT_EQ(e.values, recs[i].values) << "record " << i;
  }
  fs::remove_all(dir);
}

TEST(TensorBoard, MetricsRecordsBecomeTaggedScalars) {
  const fs::path dir = temp_dir("records");
  const std::string path = (dir / "events.out.tfevents.1.test").string();
  {
    EventFileWriter w(path, 1);
    w.write({{"step", 10}, {"epoch", 0}, {"loss", 2.5}, {"caption_loss", 1.25}, {"samples_per_s", 96.0},
             {"samples_per_s_per_rank", 48.0}, {"note", "text is not a scalar"}, {"flag", true}});
    w.write({{"step", 20}, {"epoch", 1}, {"zeroshot_top1", 0.625}, {"zeroshot_mean_per_class", 0.5}});
    w.write({{"step", 30}, {"val_loss", 3.5}, {"val_contrastive_loss", 1.5}});
    w.write({{"step", 40}, {"epoch", 2}, {"val_loss", 3.0}, {"zeroshot_top5", 0.75}});
    w.write({{"no_step", 1}});  // nothing to plot it at: not written
  }
  const std::vector<std::string> raw = read_records(path);
  ASSERT_EQ(raw.size(), 6u);
  auto tags = [](const Event& e) {
    std::map<std::string, float> m(e.values.begin(), e.values.end());
    EXPECT_EQ(m.size(), e.values.size()) << "a tag twice in one event";
    return m;
  };
  const Event train = decode_event(raw[2]), zs = decode_event(raw[3]), val = decode_event(raw[4]);
  EXPECT_EQ(train.step, 10);
  EXPECT_EQ(tags(train), (std::map<std::string, float>{{"train/epoch", 0},
                                                       {"train/loss", 2.5f},
                                                       {"train/caption_loss", 1.25f},
                                                       {"train/samples_per_second", 96},
                                                       {"train/samples_per_second_per_rank", 48}}));
  EXPECT_EQ(zs.step, 20);
  EXPECT_EQ(tags(zs), (std::map<std::string, float>{
                          {"zeroshot/epoch", 1}, {"zeroshot/top1", 0.625f}, {"zeroshot/mean_per_class", 0.5f}}));
  EXPECT_EQ(val.step, 30);
  EXPECT_EQ(tags(val), (std::map<std::string, float>{{"val/loss", 3.5f}, {"val/contrastive_loss", 1.5f}}));
  const Event mixed = decode_event(raw[5]);
  EXPECT_EQ(mixed.step, 40);
  EXPECT_EQ(tags(mixed),
            (std::map<std::string, float>{{"val/epoch", 2}, {"val/loss", 3.0f}, {"zeroshot/top5", 0.75f}}));
  fs::remove_all(dir);
}

TEST(TensorBoard, FileNamesSortInStartOrder) {
  const fs::path dir = temp_dir("names") / "tensorboard";  // created by new_event_file_path
  const std::string first = new_event_file_path(dir.string());
  EXPECT_TRUE(fs::is_directory(dir));
  const std::string name = fs::path(first).filename().string();
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  const std::string prefix = "events.out.tfevents.";
  ASSERT_EQ(name.rfind(prefix, 0), 0u) << name;
  const std::string rest = name.substr(prefix.size());
  const size_t dot = rest.find('.');
  ASSERT_NE(dot, std::string::npos) << name;
  const long long secs = std::stoll(rest.substr(0, dot));
  EXPECT_LE(std::llabs(secs - static_cast<long long>(std::time(nullptr))), 60) << name;
  EXPECT_EQ(rest.substr(dot + 1), host);
  { EventFileWriter w(first, 1); }
  // A second start (within the same second: a ".1" suffix) gets a name that sorts after.
  const std::string second = new_event_file_path(dir.string());
  EXPECT_GT(second, first);
  fs::remove_all(dir.parent_path());
}

TEST(TensorBoard, AFailedWriteIsOneErrorNamingTheFile) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  try {
    EventFileWriter w("/dev/full", 1);
    FAIL() << "writing to /dev/full did not fail";
  } catch (const coca::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("/dev/full"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// --report-to: jsonl and tensorboard in a comma list; wandb is refused with a pointer to both.
TEST(TensorBoard, ReportToOption) {
  const fs::path dir = temp_dir("options");
  std::ofstream(dir / "index.json") << "{}\n";
  auto parse = [&](const std::vector<std::string>& extra, TrainOptions& o) {
    std::vector<std::string> args = {"coca-train", "--train-data", dir.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    parse_train_options(static_cast<int>(argv.size()), argv.data(), o);
  };
  TrainOptions plain, tb, both;
  parse({}, plain);
  EXPECT_FALSE(plain.report_tensorboard);
  parse({"--report-to", "tensorboard"}, tb);
  EXPECT_TRUE(tb.report_tensorboard);
  parse({"--report-to", "jsonl, tensorboard"}, both);
  EXPECT_TRUE(both.report_tensorboard);
  auto error = [&](const std::string& v) -> std::string {
    try {
      TrainOptions o;
      parse({"--report-to", v}, o);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  const std::string wandb = error("tensorboard,wandb");
  EXPECT_NE(wandb.find("wandb is not supported"), std::string::npos) << wandb;
  EXPECT_NE(wandb.find("metrics.jsonl"), std::string::npos) << wandb;
  EXPECT_NE(wandb.find("tensorboard"), std::string::npos) << wandb;
  const std::string other = error("tensorbored");
  EXPECT_NE(other.find("--report-to"), std::string::npos) << other;
  EXPECT_NE(other.find("tensorbored"), std::string::npos) << other;
  fs::remove_all(dir);
}
