// PyTorch zip checkpoints (torch.save) read in C++. The archives in golden/torch/ were written by
// torch 1.13 (tests/reference/make_torch_checkpoints.py) from golden/micro_weights.safetensors,
// so every tensor read from them must equal the safetensors one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <filesystem>
#include <fstream>
#include <map>

#include "coca/model/coca.h"
#include "coca/model/weights.h"
#include "coca/tensor/torch_archive.h"
#include "common/test_util.h"

using namespace coca;
using coca::testing::error_of;
namespace fs = std::filesystem;

namespace {

const std::string kGolden = COCA_GOLDEN_DIR;
const std::string kTorch = kGolden + "/torch";

NamedTensors reference() { return load_safetensors(kGolden + "/micro_weights.safetensors"); }

void expect_identical(const Tensor& got, const Tensor& want, const std::string& name) {
  ASSERT_EQ(got.dtype(), DType::f32) << name;
  ASSERT_EQ(got.shape(), want.shape()) << name;
  EXPECT_EQ(got.to_double_vector(), want.to_double_vector()) << name;
}

}  // namespace

TEST(TorchArchive, SniffsZipByContent) {
  EXPECT_TRUE(is_zip_file(kTorch + "/micro.bin"));
  EXPECT_TRUE(is_zip_file(kTorch + "/micro.pt"));
  EXPECT_FALSE(is_zip_file(kGolden + "/micro_weights.safetensors"));
  EXPECT_FALSE(is_zip_file(kTorch + "/no_such_file.bin"));
}

TEST(TorchArchive, StateDictBinEqualsSafetensors) {
  const NamedTensors want = reference(), got = read_weight_file(kTorch + "/micro.bin");
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first);  // pickle order is state_dict order
    expect_identical(got[i].second, want[i].second, want[i].first);
  }
}

TEST(TorchArchive, TrainingCheckpointTakesStateDictAndStripsModulePrefix) {
  // Raw: the names as saved, under DistributedDataParallel.
  for (auto& [name, t] : load_torch_state_dict(kTorch + "/micro.pt"))
    EXPECT_TRUE(name.starts_with("module.")) << name;
  std::map<std::string, Tensor> got;
  for (auto& [name, t] : read_weight_file(kTorch + "/micro.pt")) got[name] = t;
  const NamedTensors want = reference();
  // visual.proj is stored transposed (strides [1, 16]) and text.cls_emb at offset 5 of a shared
  // storage: both must still equal the originals.
  for (auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    expect_identical(got[name], t, name);
  }
  EXPECT_EQ(got.size(), want.size() + 2);
  EXPECT_TRUE(got.count("text.attn_mask") && got.count("text_decoder.attn_mask"));
  EXPECT_EQ(got["text.attn_mask"].shape(), (Shape{8, 8}));
}

TEST(TorchArchive, HalfBfloat16AndDoubleTensors) {
  const NamedTensors want = reference(), got = read_weight_file(kTorch + "/micro_mixed.bin");
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& name = want[i].first;
    ASSERT_EQ(got[i].first, name);
    auto a = got[i].second.to_double_vector(), b = want[i].second.to_double_vector();
    ASSERT_EQ(a.size(), b.size()) << name;
    if (i % 3 == 2) {  // float64 holds every float32 exactly
      EXPECT_EQ(got[i].second.dtype(), DType::f64) << name;
      EXPECT_EQ(a, b) << name;
      continue;
    }
    EXPECT_EQ(got[i].second.dtype(), DType::f32) << name;
    // Round to nearest: half keeps 11 significant bits (subnormal spacing 2^-24), bf16 keeps 8.
    const double rel = i % 3 == 0 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    const double abs = i % 3 == 0 ? std::ldexp(1.0, -25) : 0.0;
    for (size_t k = 0; k < a.size(); ++k)
      ASSERT_LE(std::abs(a[k] - b[k]), rel * std::abs(b[k]) + abs)
          << name << "[" << k << "]: " << a[k] << " vs " << b[k];
  }
}

TEST(TorchArchive, DeflatedZip64AndProtocol4Archives) {
  const NamedTensors want = reference();
  for (const char* file : {"small_deflate.bin", "small_zip64.bin", "small_protocol4.bin"}) {
    const NamedTensors got = read_weight_file(kTorch + "/" + file);
    ASSERT_EQ(got.size(), 12u) << file;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, want[i].first) << file;
      expect_identical(got[i].second, want[i].second, std::string(file) + " " + want[i].first);
    }
  }
}

TEST(TorchArchive, LoadWeightsFromEachKindGivesTheSameModel) {
  const CocaConfig cfg = CocaConfig::from_file(kGolden + "/micro.json");
  CoCa from_st(cfg), from_bin(cfg), from_pt(cfg);
  load_weights(from_st, kGolden + "/micro_weights.safetensors");
  load_weights(from_bin, kTorch + "/micro.bin");
  load_weights(from_pt, kTorch + "/micro.pt");  // its attn_mask buffers are ignored
  auto a = from_st.named_parameters(), b = from_bin.named_parameters(), c = from_pt.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), c.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].second.to_double_vector(), b[i].second.to_double_vector()) << a[i].first;
    EXPECT_EQ(a[i].second.to_double_vector(), c[i].second.to_double_vector()) << a[i].first;
  }
}

TEST(TorchArchive, EveryMismatchIsListed) {
  CoCa model(CocaConfig::from_file(kGolden + "/micro.json"));
  NamedTensors file;
  std::vector<std::string> expect_named;
  int dropped = 0, reshaped = 0;
  for (auto& [name, t] : read_weight_file(kTorch + "/micro.bin")) {
    if (name.find("resblocks.1.") != std::string::npos && dropped < 9) {  // missing
      ++dropped;
      expect_named.push_back("missing " + name + "\n");
    } else if (name.ends_with("ln_2.bias") && reshaped < 3) {  // wrongly shaped
      ++reshaped;
      file.emplace_back(name, Tensor::zeros({t.numel() + 1}));
      expect_named.push_back(
          str_cat("wrongly shaped ", name, " (file [", t.numel() + 1, "], model [", t.numel(), "])\n"));
    } else {
      file.emplace_back(name, t);
    }
  }
  file.emplace_back("text.attn_mask", Tensor::zeros({8, 8}));  // a known buffer: ignored
  file.emplace_back("visual.attn_mask", Tensor::zeros({8, 8}));  // not one: an error
  expect_named.push_back("unexpected visual.attn_mask\n");
  // By default: one line.
  unsetenv("COCA_LIST_MISMATCH");
  ::testing::internal::CaptureStderr();
  const std::string msg = error_of([&] { load_weights(model, file, "w.bin"); });
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find("w.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("... and 5 more (5 missing, 0 unexpected, 0 wrongly shaped)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("text.attn_mask"), std::string::npos) << msg;
  // Asked for: every name on stderr, then the same one-line error.
  setenv("COCA_LIST_MISMATCH", "1", 1);
  ::testing::internal::CaptureStderr();
  const std::string again = error_of([&] { load_weights(model, file, "w.bin"); });
  const std::string listed = ::testing::internal::GetCapturedStderr();
  unsetenv("COCA_LIST_MISMATCH");
  EXPECT_NE(again.find("w.bin do not match the model config: "), std::string::npos) << again;
  ASSERT_EQ(expect_named.size(), 13u);
  for (const std::string& n : expect_named) EXPECT_NE(listed.find("  " + n), std::string::npos) << n << "\n" << listed;
  EXPECT_EQ(std::count(listed.begin(), listed.end(), '\n'), 14) << listed;  // a heading and 13 names
}

TEST(TorchArchive, BadFilesGiveOneLineNamingTheFile) {
  struct Case {
    const char* file;
    const char* says;
  } cases[] = {
      {"truncated.bin", "no zip end-of-central-directory record"},
      {"bad_opcode.bin", "unsupported pickle opcode 0x6c ('l') at offset 3"},
      {"bad_short_pickle.bin", "corrupt pickle: GLOBAL at offset 51 has no newline"},
      {"bad_global.bin", "tensor 'logit_scale': the entry is an object made by os.system"},
  };
  for (const Case& c : cases) {
    const std::string path = kTorch + "/" + c.file;
    const std::string msg = error_of([&] { read_weight_file(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.says), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(TorchArchive, CorruptBytesFailTheirCrc) {
  const fs::path dir = fs::temp_directory_path() / "coca_torch_archive_test";
  fs::create_directories(dir);
  const std::string path = (dir / "flipped.bin").string();
  std::string bytes;
  {
    std::ifstream in(kTorch + "/micro.bin", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // Tensor data fills nearly all of the file: flip a bit in the middle of it.
  bytes[bytes.size() / 2] ^= 0x40;
  std::ofstream(path, std::ios::binary) << bytes;
  const std::string msg = error_of([&] { read_weight_file(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("fails its CRC-32 check"), std::string::npos) << msg;
  // The pre-1.6 torch.save format is recognised and refused by name.
  std::ofstream(path, std::ios::binary) << std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14);
  const std::string legacy = error_of([&] { read_weight_file(path); });
  EXPECT_NE(legacy.find("legacy (pre-1.6)"), std::string::npos) << legacy;
  fs::remove_all(dir);
}
