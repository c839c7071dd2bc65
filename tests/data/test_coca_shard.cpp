// coca-shard end to end on inputs the test writes: each input format, each bad-input kind
// counted under its reason, the index and report, no temporary files left behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "coca/data/input_files.h"
#include "coca/data/shard_build.h"
#include "coca/data/shard_index.h"
#include "coca/data/shard_inputs.h"
#include "coca/data/tokenizer.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::jpeg_solid;
using coca::testing::png_solid;
using coca::testing::run_tool;
using coca::testing::TempDir;
using coca::testing::write_file;
using coca::testing::write_text;
namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& p) {
  const auto bytes = coca::testing::read_file(p);
  return nlohmann::json::parse(std::string(bytes.begin(), bytes.end()));
}

std::string slurp(const std::string& p) {
  const auto b = coca::testing::read_file(p);
  return std::string(b.begin(), b.end());
}

bool has_temporaries(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find("tmp") != std::string::npos) return true;
  return false;
}

std::vector<std::string> all_captions(const std::string& dir) {
  const ShardIndex idx = ShardIndex::load(dir);
  std::vector<std::string> out;
  for (size_t i = 0; i < idx.shards.size(); ++i) {
    ShardReader r(idx.shard_path(dir, i));
    for (auto& c : r.read_captions(0, r.size())) out.push_back(c);
  }
  return out;
}

// Every sample looked at is either written or skipped under exactly one reason.
void expect_counts_add_up(const nlohmann::json& rep) {
  int64_t by_reason = 0;
  for (const auto& [reason, n] : rep.at("skipped_by_reason").items()) by_reason += n.get<int64_t>();
  EXPECT_EQ(rep.at("skipped").get<int64_t>(), by_reason) << rep.dump(1);
  EXPECT_EQ(rep.at("considered").get<int64_t>(), rep.at("written").get<int64_t>() + by_reason) << rep.dump(1);
}

std::vector<uint8_t> corrupt_jpeg() {
  std::vector<uint8_t> j = jpeg_solid(16, 16, 9, 9, 9);
  for (size_t i = 2; i + 8 < j.size(); ++i)
    if (j[i] == 0xFF && j[i + 1] == 0xC0) { j[i + 7] = 0; j[i + 8] = 0; break; }
  return j;
}

}  // namespace

TEST(CocaShard, CsvWithEveryBadInputKind) {
  TempDir t("csv");
  const fs::path img = t.path() / "imgs";
  write_file(img / "red.png", png_solid(40, 30, 255, 0, 0));
  write_file(img / "green.jpg", jpeg_solid(30, 40, 0, 255, 0));
  const std::vector<uint8_t> grey(20 * 20, 77);
  write_file(img / "grey.png", encode_png(grey.data(), 20, 20, 1));
  std::vector<uint8_t> rgba(10 * 10 * 4, 0);  // fully transparent: white
  write_file(img / "clear.png", encode_png(rgba.data(), 10, 10, 4));
  write_file(img / "zero.png", {});
  write_text(img / "text.png", "definitely not a picture");
  const auto p = png_solid(64, 64, 1, 2, 3);
  write_file(img / "cut.png", std::vector<uint8_t>(p.begin(), p.begin() + static_cast<long>(p.size() / 2)));
  const auto j = jpeg_solid(64, 64, 1, 2, 3);
  write_file(img / "cut.jpg", std::vector<uint8_t>(j.begin(), j.begin() + static_cast<long>(j.size() / 2)));
  write_file(img / "bad.jpg", corrupt_jpeg());
  std::string tsv = "filepath\ttitle\n";
  tsv += "red.png\tA red square\n";
  tsv += "green.jpg\tgreen \xc3\xa9t\xc3\xa9 rectangle\n";
  tsv += "grey.png\t\"quoted\tgrey\"\n";
  tsv += "clear.png\tnothing at all\n";
  tsv += "missing.png\ta ghost\n";
  tsv += "zero.png\tzero bytes\n";
  tsv += "text.png\ta text file\n";
  tsv += "cut.png\ttruncated png\n";
  tsv += "cut.jpg\ttruncated jpeg\n";
  tsv += "bad.jpg\tcorrupt jpeg\n";
  tsv += "red.png\t   \n";
  tsv += "red.png\tbad \xff\xfe bytes\n";
  tsv += "red.png\ttoo\tmany fields\n";
  write_text(t.path() / "train.tsv", tsv);
  // A tokenizer so the tokens dataset and its identity in the index are exercised.
  write_merges_file(t.str("v.txt"), {{"r", "e"}, {"re", "d</w>"}});
  const std::string out = t.str("out");
  ASSERT_EQ(run_tool("--format csv --input " + t.str("train.tsv") + " --images-root " + img.string() + " --output " +
                         out + " --image-format raw --image-size 16 --samples-per-shard 3 --chunk-images 2 --threads 2 --tokenizer " +
                         t.str("v.txt") + " --context-length 6 --quiet",
                     t.str("log")),
            0)
      << slurp(t.str("log"));
  const nlohmann::json rep = read_json(fs::path(out) / "report.json");
  const auto& by = rep.at("skipped_by_reason");
  EXPECT_EQ(by.value("missing_file", 0), 1);
  EXPECT_EQ(by.value("empty_file", 0), 1);
  EXPECT_EQ(by.value("not_an_image", 0), 1);
  EXPECT_EQ(by.value("truncated_image", 0), 2);
  EXPECT_EQ(by.value("corrupt_image", 0), 1);
  EXPECT_EQ(by.value("empty_caption", 0), 1);
  EXPECT_EQ(by.value("invalid_utf8_caption", 0), 1);
  EXPECT_EQ(by.value("malformed_row", 0), 1);
  EXPECT_EQ(rep.at("written"), 4);
  EXPECT_EQ(rep.at("considered"), 13);
  expect_counts_add_up(rep);
  EXPECT_EQ(rep.at("examples").at("missing_file").at(0).at("key"), "missing.png");
  EXPECT_EQ(rep.at("examples").at("malformed_row").at(0).at("key"), "train.tsv:14");
  const std::string log = slurp(t.str("log"));
  EXPECT_NE(log.find("truncated_image: 2"), std::string::npos) << log;

  const ShardIndex idx = ShardIndex::load(out);
  EXPECT_EQ(idx.total_samples, 4);
  ASSERT_EQ(idx.shards.size(), 2u);
  EXPECT_EQ(idx.shards[0].samples, 3);
  EXPECT_EQ(idx.shards[1].samples, 1);
  EXPECT_EQ(idx.image_size, 16);
  EXPECT_EQ(idx.context_length, 6);
  EXPECT_EQ(idx.tokenizer.at("vocab_size"), 516);
  EXPECT_EQ(idx.tokenizer.at("sha256").get<std::string>().size(), 64u);
  EXPECT_NE(idx.command.find("--format csv"), std::string::npos);
  EXPECT_EQ(idx.source.at("format"), "csv");
  EXPECT_FALSE(has_temporaries(out));
  EXPECT_EQ(all_captions(out), (std::vector<std::string>{"A red square", "green \xc3\xa9t\xc3\xa9 rectangle",
                                                          "quoted\tgrey", "nothing at all"}));
  ShardReader r0(idx.shard_path(out, 0));
  std::vector<uint8_t> px(3 * 16 * 16 * 3);
  r0.read_images(0, 3, px.data());
  EXPECT_EQ(px[0], 255);  // red
  EXPECT_EQ(px[1], 0);
  EXPECT_NEAR(px[768 + 1], 255, 3);  // green JPEG
  EXPECT_EQ(px[1536], 77);           // grey expanded
  std::vector<int32_t> tok(3 * 6);
  r0.read_tokens(0, 3, tok.data());
  EXPECT_EQ(tok[0], 514);  // sot
  EXPECT_EQ(tok[1], 256 + ('a' - '!'));  // "a" is a single-letter word
  EXPECT_EQ(tok[2], 513);  // "red" -> the "re"+"d</w>" merge
  ShardReader r1(idx.shard_path(out, 1));
  r1.read_images(0, 1, px.data());
  EXPECT_EQ(px[0], 255);  // transparent composited on white
  EXPECT_EQ(r0.read_keys(0, 1)[0], "red.png");

  // A second run refuses to mix with the first, then replaces it with --overwrite.
  EXPECT_NE(run_tool("--format csv --input " + t.str("train.tsv") + " --output " + out + " --quiet", t.str("log2")), 0);
  const std::string err = slurp(t.str("log2"));
  EXPECT_NE(err.find("--overwrite"), std::string::npos) << err;
  EXPECT_EQ(run_tool("--format csv --input " + t.str("train.tsv") + " --images-root " + img.string() + " --output " +
                         out + " --image-format raw --image-size 8 --overwrite --quiet",
                     t.str("log3")),
            0);
  EXPECT_EQ(ShardIndex::load(out).shards.size(), 1u);
  EXPECT_FALSE(fs::exists(fs::path(out) / "shard-00001.h5"));
}

// A quote that is never closed swallows the rest of the file as one field. Only its own row
// is lost: it is reported where the quote opened and the rows after it are read again.
// Quoted newlines that do close stay inside the caption (RFC 4180), and keys name the line a
// row starts on.
TEST(CocaShard, CsvUnclosedQuoteLosesOnlyItsRow) {
  TempDir t("csvquote");
  for (const char* name : {"a.png", "b.png", "c.png", "d.png", "e.png", "f.png"})
    write_file(t.path() / name, png_solid(8, 8, 50, 60, 70));
  std::string tsv = "filepath\ttitle\n";                 // line 1
  tsv += "a.png\tfirst\n";                               // 2
  tsv += "b.png\t\"two\nline caption\"\n";               // 3-4
  tsv += "c.png\tthird\textra field\n";                  // 5: malformed
  tsv += "d.png\t\"a \"\"quote\"\" that never closes\n";   // 6: unclosed
  tsv += "e.png\tfifth\n";                               // 7
  tsv += "f.png\tsixth \"\"quoted\"\" words\n";           // 8 (quotes inside an unquoted field)
  write_text(t.path() / "train.tsv", tsv);
  const std::string out = t.str("out");
  ASSERT_EQ(run_tool("--format csv --input " + t.str("train.tsv") + " --images-root " + t.str("") + " --output " +
                         out + " --image-format raw --image-size 8 --quiet",
                     t.str("log")),
            0)
      << slurp(t.str("log"));
  EXPECT_EQ(all_captions(out), (std::vector<std::string>{"first", "two\nline caption", "fifth",
                                                          "sixth \"\"quoted\"\" words"}));
  const nlohmann::json rep = read_json(fs::path(out) / "report.json");
  EXPECT_EQ(rep.at("skipped_by_reason").value("unclosed_quote", 0), 1) << rep.dump(1);
  EXPECT_EQ(rep.at("skipped_by_reason").value("malformed_row", 0), 1) << rep.dump(1);
  EXPECT_EQ(rep.at("considered"), 6);
  expect_counts_add_up(rep);
  const auto& ex = rep.at("examples");
  EXPECT_EQ(ex.at("malformed_row").at(0).at("key"), "train.tsv:5");
  EXPECT_EQ(ex.at("unclosed_quote").at(0).at("key"), "train.tsv:6");
  const std::string detail = ex.at("unclosed_quote").at(0).at("detail");
  EXPECT_NE(detail.find("line 6"), std::string::npos) << detail;
  EXPECT_NE(slurp(t.str("log")).find("unclosed_quote: 1"), std::string::npos) << slurp(t.str("log"));
}

TEST(ParseDelimited, LinesAndRecoveryAfterAnUnclosedQuote) {
  // Row 2 ("x") opens a quote on its second line; the file ends inside it.
  const auto rows = parse_delimited("h1,h2\n\"multi\nline\",\"open\n\nlast,row\r\n", ',');
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_EQ(rows[1].unclosed_quote_line, 3);
  EXPECT_EQ(rows[2].line, 5);
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"last", "row"}));
  EXPECT_EQ(rows[2].unclosed_quote_line, 0);
  // A quote on the last line, with no newline after it.
  const auto tail = parse_delimited("a\tb\n\"c", '\t');
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[1].line, 2);
  EXPECT_EQ(tail[1].unclosed_quote_line, 2);
  // A closed multi-line field spans lines; the next row starts after them.
  const auto multi = parse_delimited("\"a\nb\nc\"\tz\nnext\tq", '\t');
  ASSERT_EQ(multi.size(), 2u);
  EXPECT_EQ(multi[0].fields[0], "a\nb\nc");
  EXPECT_EQ(multi[0].last_line, 3);
  EXPECT_EQ(multi[1].line, 4);
}

// Without a header there is no table to recover into: that is an error naming file:line.
TEST(ParseDelimited, UnclosedQuoteInTheHeaderIsAnError) {
  TempDir t("csvheader");
  write_text(t.path() / "bad.tsv", "\"filepath\ttitle\na.png\tcap\n");
  try {
    list_csv(t.str("bad.tsv"), CsvOptions());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.tsv:1: the header row"), std::string::npos) << e.what();
  }
}

TEST(CocaShard, CocaCaptionsJson) {
  TempDir t("coco");
  write_file(t.path() / "images" / "1.jpg", jpeg_solid(20, 10, 200, 0, 0));
  write_file(t.path() / "images" / "2.png", png_solid(10, 20, 0, 0, 200));
  write_file(t.path() / "images" / "4.png", png_solid(10, 20, 0, 0, 200));
  const nlohmann::json coco = {
      {"images", {{{"id", 1}, {"file_name", "1.jpg"}}, {{"id", 2}, {"file_name", "2.png"}},
                  {{"id", 3}, {"file_name", "3.jpg"}}, {{"id", 4}, {"file_name", "4.png"}}}},
      {"annotations", {{{"id", 10}, {"image_id", 1}, {"caption", "a red thing"}},
                       {{"id", 11}, {"image_id", 1}, {"caption", "something red"}},
                       {{"id", 12}, {"image_id", 2}, {"caption", "a blue thing"}},
                       {{"id", 13}, {"image_id", 3}, {"caption", "never found"}},
                       {{"id", 14}, {"image_id", 99}, {"caption", "no such image"}}}}};
  write_text(t.path() / "captions.json", coco.dump());
  const std::string out = t.str("out");
  ASSERT_EQ(run_tool("--format coco --input " + t.str("captions.json") + " --images-root " + t.str("images") +
                         " --output " + out + " --image-format raw --image-size 8 --quiet",
                     t.str("log")),
            0)
      << slurp(t.str("log"));
  EXPECT_EQ(all_captions(out), (std::vector<std::string>{"a red thing", "something red", "a blue thing"}));
  const nlohmann::json rep = read_json(fs::path(out) / "report.json");
  EXPECT_EQ(rep.at("skipped_by_reason").value("missing_file", 0), 1);
  EXPECT_EQ(rep.at("skipped_by_reason").value("no_caption", 0), 1);
  EXPECT_EQ(rep.at("skipped_by_reason").value("unknown_image_id", 0), 1);
  expect_counts_add_up(rep);
  ShardReader r(ShardIndex::load(out).shard_path(out, 0));
  EXPECT_EQ(r.read_keys(0, 3), (std::vector<std::string>{"coco:1:10", "coco:1:11", "coco:2:12"}));
}

TEST(CocaShard, WebDatasetTars) {
  TempDir t("wds");
  const auto txt = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  write_file(t.path() / "00000.tar",
             coca::testing::make_tar({{"000000001.jpg", jpeg_solid(12, 12, 0, 200, 0)},
                                      {"000000001.txt", txt("green tile")},
                                      {"000000001.json", txt("{}")},
                                      {"000000002.png", png_solid(12, 12, 0, 0, 200)},
                                      {"000000002.txt", txt("blue tile")},
                                      {"000000003.txt", txt("caption without image")},
                                      {"000000004.jpg", jpeg_solid(12, 12, 1, 1, 1)},
                                      {"000000005.gif", txt("GIF89a....")},
                                      {"000000005.txt", txt("gif image")}}));
  // The second tar is cut inside its second sample: the first one still counts.
  auto second = coca::testing::make_tar({{"000000006.png", png_solid(12, 12, 9, 9, 9)},
                                         {"000000006.txt", txt("grey tile")},
                                         {"000000007.png", std::vector<uint8_t>(3000, 0x42)},
                                         {"000000007.txt", txt("lost")}});
  second.resize(512 * 2 + 1024 + 700);
  write_file(t.path() / "00001.tar", second);
  const std::string out = t.str("out");
  ASSERT_EQ(run_tool("--format wds --input " + t.str("00000.tar") + " " + t.str("00001.tar") + " --output " + out +
                         " --image-format raw --image-size 8 --quiet",
                     t.str("log")),
            0)
      << slurp(t.str("log"));
  EXPECT_EQ(all_captions(out), (std::vector<std::string>{"green tile", "blue tile", "grey tile"}));
  const auto by = read_json(fs::path(out) / "report.json").at("skipped_by_reason");
  EXPECT_EQ(by.value("missing_image", 0), 1) << read_json(fs::path(out) / "report.json").dump(1);
  EXPECT_EQ(by.value("missing_caption", 0), 1);
  EXPECT_EQ(by.value("unsupported_image_format", 0), 1);
  EXPECT_EQ(by.value("truncated_tar", 0), 1);
  expect_counts_add_up(read_json(fs::path(out) / "report.json"));
  ShardReader r(ShardIndex::load(out).shard_path(out, 0));
  EXPECT_EQ(r.read_keys(0, 1)[0], "00000.tar/000000001");
}

// Found by tests/fuzz/fuzz_shard_inputs: a GNU base-256 size that is negative (first byte 0xff) or
// passes 63 bits wrapped, giving a member of size -1 (which ImageSource reads as "the whole file")
// or an overflowing offset. Such a header is corrupt_tar now; 2^63 - 1 is merely past the end.
TEST(CocaShard, TarSizeFieldsOutOfRange) {
  TempDir t("tar_sizes");
  const auto tar = coca::testing::make_tar({{"1.txt", {'c', 'a', 't'}}, {"1.jpg", jpeg_solid(8, 8, 1, 2, 3)}});
  auto with_size_field = [&](std::vector<uint8_t> field) {
    std::vector<uint8_t> out = tar;
    std::copy(field.begin(), field.end(), out.begin() + 124);
    std::fill(out.begin() + 148, out.begin() + 156, ' ');
    unsigned sum = 0;
    for (int i = 0; i < 512; ++i) sum += out[i];
    std::snprintf(reinterpret_cast<char*>(out.data() + 148), 8, "%06o", sum);
    out[155] = ' ';
    return out;
  };
  std::vector<uint8_t> negative(12, 0xff), past_63_bits(12, 0xff), max_63_bits(12, 0xff);
  past_63_bits[0] = 0x80;
  max_63_bits[0] = 0x80, max_63_bits[1] = max_63_bits[2] = max_63_bits[3] = 0, max_63_bits[4] = 0x7f;
  for (const auto& [field, reason] : {std::pair{negative, "corrupt_tar"}, std::pair{past_63_bits, "corrupt_tar"},
                                      std::pair{max_63_bits, "truncated_tar"}}) {
    write_file(t.path() / "x.tar", with_size_field(field));
    const InputListing l = list_webdataset({t.str("x.tar")});
    EXPECT_TRUE(l.items.empty());
    ASSERT_EQ(l.issues.size(), 1u);
    EXPECT_EQ(l.issues[0].reason, reason) << l.issues[0].detail;
  }
}

// img2dataset tars: the .json's "key" names the sample and its "caption" stands in for a
// missing .txt (a .txt wins when both exist); still .webp images are decoded, animated ones
// skipped as webp_animation; a json that is not an object is ignored.
TEST(CocaShard, WebDatasetJsonMetadataAndWebp) {
  TempDir t("wds-json");
  const auto txt = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  const auto px = coca::testing::solid_rgb(12, 12, 250, 10, 10);
  write_file(t.path() / "00007.tar",
             coca::testing::make_tar(
                 {{"a.webp", encode_webp(px.data(), 12, 12, 3, -1)},
                  {"a.json", txt(R"({"key": "000070001", "url": "http://x/a.webp", "caption": "red from json",
                                    "width": 12, "height": 12, "status": "success"})")},
                  {"b.jpg", jpeg_solid(12, 12, 0, 200, 0)},
                  {"b.txt", txt("green from txt")},
                  {"b.json", txt(R"({"key": "000070002", "caption": "not this one"})")},
                  {"c.png", png_solid(12, 12, 0, 0, 200)},
                  {"c.json", txt("[1, 2")},
                  {"c.txt", txt("blue, bad json")},
                  {"d.png", png_solid(12, 12, 9, 9, 9)},
                  {"d.json", txt(R"({"key": "000070004", "caption": null})")},
                  {"e.webp", coca::testing::animated_webp(6, 6)},
                  {"e.txt", txt("an animation")}}));
  const std::string out = t.str("out");
  ASSERT_EQ(run_tool("--format wds --input " + t.str("00007.tar") + " --output " + out + " --image-format raw --image-size 8 --quiet",
                     t.str("log")),
            0)
      << slurp(t.str("log"));
  EXPECT_EQ(all_captions(out), (std::vector<std::string>{"red from json", "green from txt", "blue, bad json"}));
  ShardReader r(ShardIndex::load(out).shard_path(out, 0));
  EXPECT_EQ(r.read_keys(0, 3), (std::vector<std::string>{"000070001", "000070002", "00007.tar/c"}));
  std::vector<uint8_t> first(8 * 8 * 3);
  r.read_images(0, 1, first.data());
  EXPECT_EQ(first[0], 250);  // lossless WebP, a solid colour: exact after resizing
  EXPECT_EQ(first[1], 10);
  const auto rep = read_json(fs::path(out) / "report.json");
  EXPECT_EQ(rep.at("skipped_by_reason").value("missing_caption", 0), 1) << rep.dump(1);
  EXPECT_EQ(rep.at("examples").at("missing_caption")[0].at("key"), "000070004");
  EXPECT_EQ(rep.at("skipped_by_reason").value("webp_animation", 0), 1);
  expect_counts_add_up(rep);
}

// OpenCLIP's CSV flags: the columns chosen by name among others, a comma separator with quoted
// fields holding the separator, newlines and doubled quotes, relative paths next to the table.
TEST(CocaShard, CsvColumnsByNameQuotingAndRelativePaths) {
  TempDir t("csv-names");
  write_file(t.path() / "data" / "imgs" / "a.png", png_solid(10, 10, 200, 0, 0));
  write_file(t.path() / "data" / "imgs" / "b.jpg", jpeg_solid(10, 10, 0, 200, 0));
  write_text(t.path() / "data" / "table.csv",
             "id,url,path,text,extra\n"
             "1,http://x,imgs/a.png,\"red, \"\"bright\"\"\nsquare\",x\n"
             "2,http://y,imgs/b.jpg,plain green,\"y,z\"\n");
  const std::string out = t.str("out");
  ASSERT_EQ(run_tool("--format csv --input " + t.str("data/table.csv") +
                         " --csv-separator , --csv-img-key path --csv-caption-key text --output " + out + " --quiet",
                     t.str("log")),
            0)
      << slurp(t.str("log"));
  EXPECT_EQ(all_captions(out), (std::vector<std::string>{"red, \"bright\"\nsquare", "plain green"}));
  const auto rep = read_json(fs::path(out) / "report.json");
  EXPECT_EQ(rep.at("written").get<int64_t>(), 2) << rep.dump(1);
  // A column that is not there: one line naming it and the columns that are.
  EXPECT_NE(run_tool("--format csv --input " + t.str("data/table.csv") +
                         " --csv-separator , --csv-img-key path --csv-caption-key title --output " + t.str("out2") +
                         " --quiet",
                     t.str("log2")),
            0);
  const std::string err = slurp(t.str("log2"));
  EXPECT_NE(err.find("no column 'title' in the header (columns: id, url, path, text, extra)"), std::string::npos)
      << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(CocaShard, ImageFolderClassification) {
  TempDir t("folder");
  const fs::path root = t.path() / "root";
  write_file(root / "cat" / "a.png", png_solid(10, 10, 10, 10, 10));
  write_file(root / "cat" / "b.jpg", jpeg_solid(10, 10, 10, 10, 10));
  write_file(root / "dog" / "c.png", png_solid(10, 10, 20, 20, 20));
  write_text(root / "dog" / "README.txt", "not an image");
  write_file(root / "hot_dog" / "d.png", png_solid(10, 10, 30, 30, 30));
  const std::string out = t.str("out");
  ASSERT_EQ(run_tool("--format folder --input " + root.string() + " --output " + out + " --image-format raw --image-size 8 --quiet",
                     t.str("log")),
            0)
      << slurp(t.str("log"));
  const ShardIndex idx = ShardIndex::load(out);
  EXPECT_EQ(idx.classnames, (std::vector<std::string>{"cat", "dog", "hot dog"}));
  ShardReader r(idx.shard_path(out, 0));
  ASSERT_EQ(r.size(), 4);
  std::vector<int32_t> labels(4);
  r.read_labels(0, 4, labels.data());
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 0, 1, 2}));
  EXPECT_EQ(r.classnames(), idx.classnames);
  EXPECT_EQ(read_json(fs::path(out) / "report.json").at("skipped_by_reason").value("not_an_image", 0), 1);
  write_text(t.path() / "names.txt", "Tabby Cat\nGood Dog\nHot Dog\n");
  ASSERT_EQ(run_tool("--format folder --input " + root.string() + " --classnames " + t.str("names.txt") +
                         " --output " + out + " --image-format raw --image-size 8 --overwrite --quiet",
                     t.str("log")),
            0);
  EXPECT_EQ(ShardIndex::load(out).classnames, (std::vector<std::string>{"Tabby Cat", "Good Dog", "Hot Dog"}));
  EXPECT_EQ(all_captions(out)[2], "Good Dog");
}

// ImageNet layout: folders named by WordNet id, labels = position in the bundled id list,
// names from the bundled class names (1000 of each, whatever folders are present). The expected
// labels and names are ImageNet's (tench 0, goldfish 1, toilet paper 999).
TEST(CocaShard, ImageFolderWithWordNetIds) {
  TempDir t("wnid");
  const fs::path root = t.path() / "val";
  write_file(root / "n15075141" / "ILSVRC2012_val_00000001.JPEG", jpeg_solid(10, 10, 250, 250, 250));
  write_file(root / "n01440764" / "ILSVRC2012_val_00000002.JPEG", jpeg_solid(10, 10, 90, 90, 20));
  write_file(root / "n01443537" / "ILSVRC2012_val_00000003.JPEG", jpeg_solid(10, 10, 250, 150, 0));
  write_file(root / "n01443537" / "ILSVRC2012_val_00000004.JPEG", jpeg_solid(10, 10, 240, 140, 0));
  const std::string out = t.str("out");
  ASSERT_EQ(run_tool("--format folder --input " + root.string() +
                         " --class-ids imagenet1k_wnids --classnames imagenet1k --output " + out + " --quiet",
                     t.str("log")),
            0)
      << slurp(t.str("log"));
  const ShardIndex idx = ShardIndex::load(out);
  ASSERT_EQ(idx.classnames.size(), 1000u);
  EXPECT_EQ(idx.classnames[0], "tench");
  EXPECT_EQ(idx.classnames[1], "goldfish");
  EXPECT_EQ(idx.classnames[999], "toilet paper");
  ShardReader r(idx.shard_path(out, 0));
  ASSERT_EQ(r.size(), 4);
  std::vector<int32_t> labels(4);
  r.read_labels(0, 4, labels.data());
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 1, 1, 999}));  // sorted folders: n01440764, n01443537, n15075141
  EXPECT_EQ(all_captions(out), (std::vector<std::string>{"tench", "goldfish", "goldfish", "toilet paper"}));
  EXPECT_EQ(r.classnames(), idx.classnames);
  // A folder that is not a listed id: one clear error naming it.
  write_file(root / "n99999999" / "x.JPEG", jpeg_solid(10, 10, 1, 1, 1));
  EXPECT_NE(run_tool("--format folder --input " + root.string() + " --class-ids imagenet1k_wnids --output " +
                         t.str("out2") + " --quiet",
                     t.str("log2")),
            0);
  EXPECT_NE(slurp(t.str("log2")).find("class folder 'n99999999' is not in"), std::string::npos)
      << slurp(t.str("log2"));
  EXPECT_NE(run_tool("--format folder --input " + root.string() + " --class-ids no_such_list --output " +
                         t.str("out3") + " --quiet",
                     t.str("log3")),
            0);
  EXPECT_NE(slurp(t.str("log3")).find("--class-ids no_such_list: neither a file nor a bundled classnames list"),
            std::string::npos)
      << slurp(t.str("log3"));
}

// --shuffle-seed: the same items in a seeded order (the same for the same seed), recorded in
// the index; without it, input order.
TEST(CocaShard, ShuffleSeed) {
  TempDir t("shuffle");
  fs::create_directories(t.path() / "img");
  std::string tsv = "filepath\ttitle\n";
  std::vector<std::string> in_order;
  for (int i = 0; i < 24; ++i) {
    const std::string name = "img/" + std::to_string(i) + ".png";
    write_file(t.path() / name, png_solid(8, 8, static_cast<uint8_t>(10 * i), 0, 0));
    tsv += name + "\tcaption " + std::to_string(i) + "\n";
    in_order.push_back("caption " + std::to_string(i));
  }
  write_file(t.path() / "train.tsv", std::vector<uint8_t>(tsv.begin(), tsv.end()));
  const std::string base = "--format csv --input " + t.str("train.tsv") + " --images-root " + t.str("") +
                           " --image-format raw --image-size 8 --samples-per-shard 10 --quiet --output ";
  ASSERT_EQ(run_tool(base + t.str("plain"), t.str("log0")), 0) << slurp(t.str("log0"));
  ASSERT_EQ(run_tool(base + t.str("s1") + " --shuffle-seed 1", t.str("log1")), 0) << slurp(t.str("log1"));
  ASSERT_EQ(run_tool(base + t.str("s1b") + " --shuffle-seed 1", t.str("log2")), 0) << slurp(t.str("log2"));
  ASSERT_EQ(run_tool(base + t.str("s2") + " --shuffle-seed 2", t.str("log3")), 0) << slurp(t.str("log3"));
  EXPECT_EQ(all_captions(t.str("plain")), in_order);
  const auto s1 = all_captions(t.str("s1")), s1b = all_captions(t.str("s1b")), s2 = all_captions(t.str("s2"));
  EXPECT_NE(s1, in_order);
  EXPECT_EQ(s1, s1b);
  EXPECT_NE(s1, s2);
  auto sorted = s1;
  std::sort(sorted.begin(), sorted.end());
  auto expect = in_order;
  std::sort(expect.begin(), expect.end());
  EXPECT_EQ(sorted, expect);  // a permutation: nothing lost or repeated
  EXPECT_EQ(read_json(fs::path(t.str("s1")) / "index.json").at("source").value("shuffle_seed", -1), 1);
}

TEST(CocaShard, HelpAndUsageErrors) {
  TempDir t("help");
  EXPECT_EQ(run_tool("--help", t.str("log")), 0);
  EXPECT_NE(slurp(t.str("log")).find("--samples-per-shard"), std::string::npos);
  EXPECT_NE(run_tool("--format nope --input x --output " + t.str("o"), t.str("log")), 0);
  const std::string err = slurp(t.str("log"));
  EXPECT_NE(err.find("coca-shard: error"), std::string::npos) << err;
}

TEST(ShardBuild, FailureLeavesNoPartialShard) {
  TempDir t("fail");
  write_file(t.path() / "x.png", png_solid(8, 8, 1, 1, 1));
  std::vector<WorkItem> items(5);
  for (size_t i = 0; i < items.size(); ++i) {
    items[i].key = "k" + std::to_string(i);
    items[i].image.path = t.str("x.png");
    items[i].captions = {"cap"};
    items[i].label = i < 3 ? 0 : 7;  // the fourth item's label is out of range: the writer throws
  }
  BuildOptions o;
  o.out_dir = t.str("out");
  o.layout.image_size = 8;
  o.layout.labels = true;
  o.layout.classnames = {"only"};
  o.samples_per_shard = 2;
  o.progress = false;
  SkipReport rep;
  EXPECT_THROW(build_shards(items, o, rep), Error);
  EXPECT_TRUE(fs::is_empty(t.path() / "out"));  // the finished first shard and the partial second are gone
}

// WebDataset's brace patterns and pipe: inputs (coca-shard --format wds).
TEST(InputFiles, BracesAndPipeNames) {
  EXPECT_EQ(expand_braces("s/{00008..00011}.tar"),
            (std::vector<std::string>{"s/00008.tar", "s/00009.tar", "s/00010.tar", "s/00011.tar"}));
  EXPECT_EQ(expand_braces("{a,b}/{1..2}.tar"), (std::vector<std::string>{"a/1.tar", "a/2.tar", "b/1.tar", "b/2.tar"}));
  EXPECT_EQ(expand_braces("plain.tar"), (std::vector<std::string>{"plain.tar"}));
  EXPECT_EQ(expand_braces("pipe:cat x/{0..1}.tar").back(), "pipe:cat x/1.tar");
  for (const char* bad : {"s/{0..}.tar", "s/{00005..00001}.tar", "s/{0..2.tar", "s/0..2}.tar", "{a{b}}"}) {
    try {
      expand_braces(bad);
      ADD_FAILURE() << bad << " expanded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(input_base_name("/data/tars/00042.tar"), "00042.tar");
  EXPECT_EQ(input_base_name("pipe:curl -s https://host/a/00042.tar"), "00042.tar");
  EXPECT_EQ(input_base_name("pipe:aws s3 cp s3://bucket/00042.tar -"), "00042.tar");
  EXPECT_EQ(input_base_name("pipe:gen-tar --count 3"), "3");
}

// A tar read from a pipe: the same samples as the file; a command that fails is an error.
TEST(InputFiles, PipeReadsLikeTheFile) {
  TempDir t("pipe");
  const auto txt = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  write_file(t.path() / "00003.tar", coca::testing::make_tar({{"a.jpg", jpeg_solid(8, 8, 1, 2, 3)},
                                                             {"a.txt", txt("one")},
                                                             {"b.png", png_solid(8, 8, 4, 5, 6)},
                                                             {"b.txt", txt("two")}}));
  const InputListing file = list_webdataset({t.str("00003.tar")});
  const InputListing pipe = list_webdataset({"pipe:cat " + t.str("00003.tar")});
  ASSERT_EQ(file.items.size(), 2u);
  ASSERT_EQ(pipe.items.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(file.items[i].key, pipe.items[i].key);
    EXPECT_EQ(file.items[i].captions, pipe.items[i].captions);
    EXPECT_EQ(file.items[i].image.data, pipe.items[i].image.data);
  }
  EXPECT_EQ(pipe.items[1].key, "00003.tar/b");
  EXPECT_THROW(list_webdataset({"pipe:cat " + t.str("00003.tar") + "; exit 4"}), Error);
}
