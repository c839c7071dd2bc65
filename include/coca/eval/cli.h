#pragma once
// The subcommands of coca-eval; each parses its own options (Boost.Program_options), prints
// its --help, and returns the exit code. src/apps/coca-eval.cpp dispatches on the first word.
namespace coca::eval {

int embed_main(int argc, char** argv);
int zeroshot_main(int argc, char** argv);
int retrieval_main(int argc, char** argv);
int caption_main(int argc, char** argv);

}  // namespace coca::eval
