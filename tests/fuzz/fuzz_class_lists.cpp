// The line-per-entry lists that name classes and prompts. The input holds two files split at
// the first NUL (fuzz_common.h): A, then B.
//   coca-eval zeroshot: A as --templates, B as --classnames, and the prompts they expand to
//   coca-shard folder input, on a fixed tree of class folders: B as the class names file,
//   A as the class ids file (ImageNet's WordNet ids), each alone and together
#include <fstream>

#include "coca/data/shard_inputs.h"
#include "coca/eval/prompts.h"
#include "fuzz_common.h"

using namespace coca;

namespace {

// root/<class>/<image>: two WordNet-id folders and one named folder, a file in each.
std::string make_folder_tree() {
  const auto root = fuzz::scratch_dir() / "folder";
  for (const char* cls : {"n01440764", "n01443537", "great_white_shark"}) {
    std::filesystem::create_directories(root / cls);
    std::ofstream(root / cls / "img.jpg") << "x";
  }
  return root.string();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file_a("list-a"), file_b("list-b");
  static const std::string root = make_folder_tree();
  const auto parts = fuzz::split_parts(data, size, 2);
  const std::string& a = file_a.write(parts[0]);
  const std::string& b = file_b.write(parts[1]);

  std::vector<std::string> templates, classnames;
  const bool have_templates = fuzz::expect_errors([&] { templates = eval::read_templates(a); });
  fuzz::expect_errors([&] { classnames = eval::read_classnames(b); });
  if (have_templates) {
    FUZZ_ASSERT(!templates.empty());
    const auto prompts = eval::expand_templates(classnames, templates);  // must not throw
    FUZZ_ASSERT(prompts.size() == classnames.size() * templates.size());
  }

  for (const auto& files : {std::pair{b, std::string()}, std::pair{std::string(), a}, std::pair{b, a}}) {
    fuzz::expect_errors([&] {
      const InputListing l = list_image_folder(root, files.first, files.second);
      for (const auto& item : l.items) {
        FUZZ_ASSERT(item.label >= 0 && static_cast<size_t>(item.label) < l.classnames.size());
        FUZZ_ASSERT(item.captions.size() == 1 && item.captions[0] == l.classnames[item.label]);
      }
    });
  }
  return 0;
}
