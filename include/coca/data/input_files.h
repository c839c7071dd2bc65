#pragma once
// How coca-shard names its input files: WebDataset's brace patterns and OpenCLIP's "pipe:"
// inputs, and a sequential byte reader over either.
//   'shards/{00000..00099}.tar'   numeric ranges, zero-padded as written (the width of the
//                                 bound that has leading zeros)
//   'shards/{a,b,c}.tar'          alternatives; several groups expand left to right
//   'pipe:curl -s URL'            the standard output of a shell command
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace coca {

// Every name the pattern stands for, in order; a pattern without braces is itself. Throws an
// Error naming the pattern for an unbalanced brace or a malformed range.
std::vector<std::string> expand_braces(const std::string& pattern);

// True for "pipe:COMMAND".
bool is_pipe_input(const std::string& name);

// The file name a key prefix is made from: the last path component, or for a pipe that of its
// command's last word naming a .tar, else of its last word ("pipe:curl -s https://host/00042.tar"
// and "pipe:aws s3 cp s3://bucket/00042.tar -" give "00042.tar").
std::string input_base_name(const std::string& name);

// Reads a file or a pipe front to back. A pipe's command runs under /bin/sh; finish() waits
// for it and throws when it exited non-zero (a failed download is an error, not a short tar).
class ByteSource {
 public:
  explicit ByteSource(const std::string& name);
  ~ByteSource();
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;
  // Up to n bytes; fewer only at the end. Throws on a read error.
  size_t read(void* dst, size_t n);
  // Reads and drops n bytes; returns how many there were.
  int64_t skip(int64_t n);
  int64_t position() const { return position_; }
  const std::string& name() const { return name_; }
  void finish();

 private:
  std::string name_;
  FILE* file_ = nullptr;
  bool pipe_ = false;
  int64_t position_ = 0;
};

}  // namespace coca
