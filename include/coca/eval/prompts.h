#pragma once
// Zero-shot prompts: the templates file (--templates: one template per line, '{}' = the class
// name, '#' starts a comment) and the class names file (--classnames: one name per line, in
// label order) that coca-eval zeroshot reads, and the prompts they make.
#include <string>
#include <vector>

namespace coca::eval {

// Templates from `path` (empty: the single "a photo of a {}."). Throws naming the file when it
// cannot be opened, holds no template, or a line lacks '{}'.
std::vector<std::string> read_templates(const std::string& path);
// Non-empty lines of `path`, a trailing '\r' dropped. Throws when the file cannot be opened.
std::vector<std::string> read_classnames(const std::string& path);
// Every class name put into every template's first '{}', class-major: [C * T] prompts.
std::vector<std::string> expand_templates(const std::vector<std::string>& classnames,
                                          const std::vector<std::string>& templates);

}  // namespace coca::eval
