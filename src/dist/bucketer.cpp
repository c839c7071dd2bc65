#include "coca/dist/bucketer.h"

#include <algorithm>

#include "device_copy.h"

namespace coca::dist {

GradientBucketer::GradientBucketer(std::shared_ptr<Communicator> comm,
                                   const std::vector<std::pair<std::string, Tensor>>& params, BucketOptions opts)
    : comm_(std::move(comm)), opts_(opts) {
  COCA_CHECK(comm_ != nullptr, "GradientBucketer: no communicator");
  COCA_CHECK(opts_.bucket_bytes > 0, "GradientBucketer: bucket_bytes must be positive");
  for (const auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    COCA_CHECK(p.is_leaf() && p.is_contiguous(), "GradientBucketer: parameter ", name, " ", p.describe(),
               " must be a contiguous leaf");
    COCA_CHECK(!p.impl().post_accumulate_hook, "GradientBucketer: parameter ", name,
               " already has a post-accumulate hook (two bucketers on one model?)");
    COCA_CHECK(p.device() == comm_->device() || p.device() == Device::CPU, "GradientBucketer: parameter ", name, " ",
               p.describe(), " is not on the ", comm_->backend(), " communicator's device");
    params_.emplace_back(name, p);
  }
  arrival_.assign(params_.size(), -1);
  std::vector<size_t> order(params_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = order.size() - 1 - i;  // reverse registration
  build(order);
}

void GradientBucketer::build(const std::vector<size_t>& order) {
  const int64_t W = comm_->size();
  buckets_.clear();
  size_t bytes = 0;
  for (size_t index : order) {
    const auto& [name, p] = params_[index];
    const size_t pbytes = p.numel() * dtype_size(p.dtype());
    if (buckets_.empty() || buckets_.back().dtype != p.dtype() ||
        (bytes + pbytes > opts_.bucket_bytes && !buckets_.back().entries.empty())) {
      buckets_.emplace_back();
      buckets_.back().dtype = p.dtype();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    b.entries.push_back(Entry{index, name, p, b.numel, false});
    b.numel += p.numel();
    bytes += pbytes;
  }
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    Bucket& b = buckets_[bi];
    b.padded = opts_.shard ? (b.numel + W - 1) / W * W : b.numel;
    b.flat = detail::zeros_on({b.padded}, b.dtype, comm_->device());
    if (opts_.shard) b.shard = detail::zeros_on({b.padded / W}, b.dtype, comm_->device());
    for (size_t ei = 0; ei < b.entries.size(); ++ei)
      b.entries[ei].param.impl().post_accumulate_hook = [this, bi, ei](TensorImpl&) { on_gradient(bi, ei); };
  }
  next_launch_ = 0;
}

// Every rank must use the same layout: rank 0's observed order wins.
void GradientBucketer::reorder_by_arrival() {
  const int64_t P = static_cast<int64_t>(params_.size());
  std::vector<size_t> order(P);
  for (int64_t i = 0; i < P; ++i) order[i] = P - 1 - i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int64_t x = arrival_[a] < 0 ? P + arrivals_ : arrival_[a], y = arrival_[b] < 0 ? P + arrivals_ : arrival_[b];
    return x < y;
  });
  if (comm_->size() > 1) {
    std::vector<int32_t> ints(order.begin(), order.end());
    Tensor host = Tensor::from_vector(ints, {P});
    Tensor shared = detail::zeros_on({P}, DType::i32, comm_->device());
    detail::copy_into(shared, 0, host);
    comm_->broadcast(shared, 0);
    detail::copy_out(host, shared, 0);
    const int32_t* p = host.data<int32_t>();
    for (int64_t i = 0; i < P; ++i) order[i] = static_cast<size_t>(p[i]);
  }
  build(order);
}

GradientBucketer::~GradientBucketer() {
  for (Bucket& b : buckets_)
    for (Entry& e : b.entries) e.param.impl().post_accumulate_hook = nullptr;
}

void GradientBucketer::on_gradient(size_t bi, size_t ei) {
  Bucket& b = buckets_[bi];
  Entry& e = b.entries[ei];
  COCA_CHECK(!b.launched, "GradientBucketer: the gradient of ", e.name,
             " changed after its bucket was sent (a second backward before finish(); accumulate with overlap off)");
  detail::copy_into(b.flat, e.offset, e.param.grad());
  if (arrival_[e.index] < 0) arrival_[e.index] = arrivals_++;
  if (!e.arrived) {
    e.arrived = true;
    ++b.arrived;
  }
  if (opts_.overlap) launch_ready();
  progress();
}

void GradientBucketer::launch_ready() {
  while (next_launch_ < buckets_.size() &&
         buckets_[next_launch_].arrived == static_cast<int>(buckets_[next_launch_].entries.size()))
    launch(buckets_[next_launch_++]);
}

void GradientBucketer::launch(Bucket& b) {
  b.launched = true;
  if (opts_.shard) {
    detail::zero_range(b.flat, b.numel, b.padded - b.numel);
    b.work = comm_->reduce_scatter_async(b.flat, b.shard, ReduceOp::Average);
  } else {
    b.work = comm_->all_reduce_async(b.flat, ReduceOp::Average);
  }
}

// Non-blocking MPI collectives advance only inside MPI calls: poke the ones in flight.
void GradientBucketer::progress() {
  for (size_t i = 0; i < next_launch_; ++i)
    if (buckets_[i].work) buckets_[i].work->test();
}

void GradientBucketer::finish() {
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = next_launch_; i < buckets_.size(); ++i) {
    Bucket& b = buckets_[i];
    for (Entry& e : b.entries) {
      if (e.arrived) continue;
      // No hook in the last backward, but with --accum-freq the earlier micro-batches (hooks
      // suspended) may have accumulated into .grad: that is this rank's contribution.
      const Tensor g = e.param.grad();
      if (g.defined()) detail::copy_into(b.flat, e.offset, g);
      else detail::zero_range(b.flat, e.offset, e.param.numel());
    }
    b.arrived = static_cast<int>(b.entries.size());
  }
  launch_ready();
  for (Bucket& b : buckets_) b.work->wait();
  if (!opts_.shard) {
    for (Bucket& b : buckets_) {
      for (Entry& e : b.entries) {
        const Tensor& p = e.param;
        if (p.device() == b.flat.device()) {
          p.impl().grad = make_view(b.flat, p.shape(), contiguous_strides(p.shape()), e.offset).impl_ptr();
        } else {
          Tensor g = Tensor::empty(p.shape(), p.dtype(), p.device());
          detail::copy_out(g, b.flat, e.offset);
          p.impl().grad = g.impl_ptr();
        }
      }
    }
  }
  last_wait_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (Bucket& b : buckets_) {
    for (Entry& e : b.entries) e.arrived = false;
    b.arrived = 0;
    b.launched = false;
    b.work.reset();
  }
  next_launch_ = 0;
  if (!reordered_ && opts_.reorder_after_first_step && !opts_.shard) {
    // The .grad views set above keep the old buffers alive; the next step fills new ones.
    reordered_ = true;
    reorder_by_arrival();
  }
}

}  // namespace coca::dist
