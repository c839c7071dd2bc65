// NCCL communicator and the two collectives data-parallel CoCa needs (gradient all-reduce,
// feature all-gather).
#include <nccl.h>

#include <cstring>

#include "coca/kernels/cuda/context.h"
#include "coca/kernels/cuda/nccl.h"

namespace coca::cuda {

namespace {

ncclDataType_t nccl_type(DType t, const char* op) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::u8: return ncclUint8;
  }
  throw Error(str_cat(op, ": unsupported dtype"));
}

void check_operand(const Tensor& t, const char* op) {
  COCA_CHECK(t.device() == Device::CUDA && t.is_contiguous(), op, ": ", t.describe(),
             " must be a contiguous CUDA tensor");
}

}  // namespace

std::string NcclComm::unique_id() {
  ncclUniqueId id;
  COCA_NCCL_CHECK(ncclGetUniqueId(&id));
  return std::string(id.internal, sizeof(id.internal));
}

NcclComm::NcclComm(int rank, int world, const std::string& id) : rank_(rank), world_(world) {
  COCA_CHECK(id.size() == sizeof(ncclUniqueId::internal), "NcclComm: the unique id has ", id.size(), " bytes, not ",
             sizeof(ncclUniqueId::internal));
  COCA_CHECK(device_count() > 0, "NcclComm: no CUDA device");
  ncclUniqueId uid;
  std::memcpy(uid.internal, id.data(), id.size());
  COCA_CUDA_CHECK(cudaSetDevice(rank % device_count()));
  ncclComm_t comm;
  COCA_NCCL_CHECK(ncclCommInitRank(&comm, world, uid, rank));
  comm_ = comm;
}

NcclComm::~NcclComm() {
  if (comm_) ncclCommDestroy(static_cast<ncclComm_t>(comm_));  // in a destructor: never throws
}

void NcclComm::all_reduce_sum(Tensor& t) {
  check_operand(t, "all_reduce_sum");
  if (t.numel() == 0) return;
  COCA_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype(), "all_reduce_sum"),
                                ncclSum, static_cast<ncclComm_t>(comm_), stream()));
}

void NcclComm::all_gather(const Tensor& in, Tensor& out) {
  check_operand(in, "all_gather");
  check_operand(out, "all_gather");
  COCA_CHECK(out.dtype() == in.dtype() && out.numel() == in.numel() * world_, "all_gather: output ",
             out.describe(), " does not hold ", world_, " copies of ", in.describe());
  if (in.numel() == 0) return;
  COCA_NCCL_CHECK(ncclAllGather(in.raw_data(), out.raw_data(), in.numel(), nccl_type(in.dtype(), "all_gather"),
                                static_cast<ncclComm_t>(comm_), stream()));
}

}  // namespace coca::cuda
