// coca-shard's caption inputs (shard_inputs.h), the first byte choosing which one reads the rest:
//   0  CSV/TSV caption table: parse_delimited and list_csv ("filepath", "title"), with '\t' and ','
//   1  COCO captions JSON: list_coco
//   2  WebDataset tar: list_webdataset, then every listed image's bytes read as the writer reads them
#include "coca/data/shard_inputs.h"
#include "fuzz_common.h"

using namespace coca;

namespace {

void check_rows(const std::vector<DelimitedRow>& rows) {
  int64_t previous = 0;
  for (const auto& row : rows) {
    FUZZ_ASSERT(row.line > previous && row.last_line >= row.line);
    FUZZ_ASSERT(row.unclosed_quote_line == 0 || row.unclosed_quote_line >= row.line);
    previous = row.last_line;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static fuzz::MemFile file("input");
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string& path = file.write(body);
  switch (data[0] % 3) {
    case 0: {
      const std::string text(body);
      check_rows(parse_delimited(text, ','));
      check_rows(parse_delimited(text, '\t'));
      for (const char separator : {'\t', ','}) {
        CsvOptions options;
        options.separator = separator;
        fuzz::expect_errors([&] {
          const InputListing l = list_csv(path, options);
          for (const auto& item : l.items) FUZZ_ASSERT(item.captions.size() == 1);
        });
      }
      break;
    }
    case 1:
      fuzz::expect_errors([&] {
        const InputListing l = list_coco(path, "/images");
        for (const auto& item : l.items) FUZZ_ASSERT(!item.captions.empty());
      });
      break;
    case 2:
      fuzz::expect_errors([&] {
        const InputListing l = list_webdataset({path});
        for (const auto& item : l.items) {
          FUZZ_ASSERT(item.image.offset >= 0 && item.image.size >= 0);
          FUZZ_ASSERT(item.image.offset + item.image.size <= static_cast<int64_t>(body.size()));
          std::vector<uint8_t> bytes;
          std::string reason, detail;
          FUZZ_ASSERT(read_image_bytes(item.image, bytes, reason, detail));
          FUZZ_ASSERT(bytes.size() == static_cast<size_t>(item.image.size));
        }
      });
      break;
  }
  return 0;
}
