#pragma once
// WebDataset tars read front to back, member by member (a file or a pipe: nothing is
// seeked), and grouped into samples as WebDataset groups them: consecutive members that
// share a key (the path up to the first dot of the file name). Memory holds one sample.
// ustar prefixes, GNU long names ('L') and pax paths ('x') are understood. A cut-off or
// damaged archive ends the stream with one issue (truncated_tar / corrupt_tar); the samples
// before it are used.
#include <cstdint>
#include <string>
#include <vector>

#include "coca/data/input_files.h"
#include "coca/data/shard_inputs.h"

namespace coca {

struct TarMemberData {
  std::string name;
  int64_t offset = 0;          // of the member's data in the archive
  std::vector<uint8_t> data;   // empty unless the caller wanted it
};

class TarReader {
 public:
  TarReader(ByteSource& source, std::vector<InputIssue>& issues) : src_(source), issues_(issues) {}
  // The next regular file; its data is read when want(name, size) is true, else skipped. False at
  // the end of the archive or at damage (an issue is then recorded).
  template <typename Want>
  bool next(TarMemberData& m, Want&& want) {
    for (;;) {
      int64_t size = 0;
      char type = 0;
      if (!next_header(m.name, size, type)) return false;
      m.offset = src_.position();
      const bool regular = type == '0' || type == '\0' || type == '7';
      if (regular && want(m.name, size)) {
        if (!read_body(m.data, size)) return false;
      } else if (!skip_body(size)) {
        return false;
      }
      if (regular) return true;
    }
  }

 private:
  bool next_header(std::string& name, int64_t& size, char& type);
  bool read_body(std::vector<uint8_t>& out, int64_t size);
  bool skip_body(int64_t size);
  bool pad(int64_t size);

  ByteSource& src_;
  std::vector<InputIssue>& issues_;
  std::string long_name_;
  int64_t members_ = 0;
  bool done_ = false;
};

// Samples of one WebDataset tar as work items with their image bytes in memory (see
// shard_inputs.h for the wds conventions: .jpg/.jpeg/.png/.webp, .txt, img2dataset's .json).
class WdsSampleReader {
 public:
  // `name` is the input as given (a path or pipe:...); keys are "<base name>/<key>" unless
  // the .json names the sample.
  WdsSampleReader(ByteSource& source, std::vector<InputIssue>& issues);
  // The next usable sample; samples that cannot be used become issues. False at the end.
  bool next(WorkItem& item);

 private:
  struct Group;
  bool finish_group(Group& g, WorkItem& item);

  std::vector<InputIssue>& issues_;
  TarReader tar_;
  std::string base_name_;
  TarMemberData member_;
  bool have_member_ = false;
  bool ended_ = false;
};

}  // namespace coca
