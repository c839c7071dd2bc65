#pragma once
// Data files that come with coca: class name lists (data_tools/classnames/<name>.txt, e.g.
// imagenet1k, imagenet1k_wnids) and prompt templates (data_tools/templates/<name>.txt, e.g.
// openai, simple). Flags that take such a file accept either a path or a bundled name.
#include <string>

namespace coca {

// `name_or_path` when it names an existing file. Otherwise, for a bare name (no '/'), the first
// existing <dir>/<kind>/<name>.txt among: $COCA_DATA_DIR, <binary's folder>/../share/coca (an
// install), the source tree's data_tools (a build tree). kind: "classnames" or "templates".
// Throws naming the places tried. `flag` names the option in the message.
std::string resolve_bundled_file(const std::string& kind, const std::string& name_or_path, const std::string& flag);

// OpenCLIP's CLIP tokenizer file (bpe_simple_vocab_16e6.txt.gz, the 49,408-token vocabulary),
// where users have it: $COCA_DATA_DIR, <binary's folder>/../share/coca, the source tree's
// data_tools, then an installed open_clip Python package (found through python3's import
// path, without importing it). `found` says which file was taken and its sha256; when there is
// none the path is empty and `found` lists every place looked in.
inline constexpr const char* kClipTokenizerFile = "bpe_simple_vocab_16e6.txt.gz";
std::string find_clip_tokenizer(std::string& found);

}  // namespace coca
