#pragma once
// Gradient synchronisation that overlaps backward. Parameters are grouped into buckets of about
// `bucket_bytes` (one dtype each, in reverse registration order: roughly the order in which
// backward produces their gradients; after the first step, in the observed order). Each parameter's post-accumulate hook copies its gradient
// into the bucket's flat buffer; when a bucket is complete it is all-reduced (averaged) at
// once, while the rest of backward runs. Buckets launch in index order on every rank, so ranks
// always issue the same collectives in the same order. CPU: non-blocking MPI collectives,
// progressed from every hook; GPU: the NCCL communicator's own stream, ordered with events.
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "coca/dist/communicator.h"

namespace coca::dist {

struct BucketOptions {
  size_t bucket_bytes = size_t{25} << 20;
  // false: launch every bucket in finish() (no overlap; for comparison and debugging).
  bool overlap = true;
  // ZeRO-1: reduce-scatter each bucket (padded to a multiple of W) instead of all-reducing it;
  // each rank then holds the averaged gradient of its 1/W slice only (see Zero1AdamW).
  bool shard = false;
  // After the first step, re-form the buckets in the order in which that step's gradients
  // arrived (rank 0's order, broadcast), so that buckets fill and launch as backward proceeds
  // (CoCa's text tower finishes before its image tower, unlike registration order suggests).
  // Not in shard mode: ZeRO-1's slices are fixed by the first layout.
  bool reorder_after_first_step = true;
};

class GradientBucketer {
 public:
  // Sets the post-accumulate hook of every parameter (which must not already have one).
  GradientBucketer(std::shared_ptr<Communicator> comm, const std::vector<std::pair<std::string, Tensor>>& params,
                   BucketOptions opts = {});
  ~GradientBucketer();  // removes the hooks
  GradientBucketer(const GradientBucketer&) = delete;
  GradientBucketer& operator=(const GradientBucketer&) = delete;

  // After backward: launches what is left, waits, and (unsharded) sets every parameter's .grad
  // to the rank-average. A parameter whose hook did not fire since the last finish() (hooks
  // suspended for all but the last --accum-freq micro-batch, or not reached by the last one)
  // contributes its .grad as it stands; one with no .grad on this rank counts as zero, so
  // parameters unused on every rank get a zero gradient.
  void finish();
  // Seconds the last finish() spent waiting for communication after backward ended.
  double last_wait_seconds() const { return last_wait_s_; }

  struct Entry {
    size_t index = 0;  // in the constructor's parameter list
    std::string name;
    Tensor param;
    int64_t offset = 0;  // elements, in the bucket's flat buffer
    bool arrived = false;
  };
  struct Bucket {
    DType dtype = DType::f32;
    std::vector<Entry> entries;
    int64_t numel = 0;   // sum of the entries' numel
    int64_t padded = 0;  // numel rounded up to a multiple of W in shard mode, else numel
    Tensor flat;         // [padded] on the communicator's device
    Tensor shard;        // [padded / W], shard mode: this rank's averaged slice
    int arrived = 0;
    bool launched = false;
    std::unique_ptr<Work> work;
  };
  const std::vector<Bucket>& buckets() const { return buckets_; }
  std::vector<Bucket>& buckets() { return buckets_; }
  const BucketOptions& options() const { return opts_; }
  Communicator& comm() const { return *comm_; }

 private:
  void build(const std::vector<size_t>& order);
  void reorder_by_arrival();
  void on_gradient(size_t bucket, size_t entry);
  void launch_ready();
  void launch(Bucket& b);
  void progress();

  std::shared_ptr<Communicator> comm_;
  BucketOptions opts_;
  std::vector<std::pair<std::string, Tensor>> params_;  // those that require grad
  std::vector<int64_t> arrival_;                       // per parameter, first step only; -1 = none
  int64_t arrivals_ = 0;
  bool reordered_ = false;
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  double last_wait_s_ = 0;
};

}  // namespace coca::dist
