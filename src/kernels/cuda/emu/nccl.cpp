// NCCL test doubles over MPI for the emulated build (COCA_CUDA=EMU): one emulated GPU per MPI
// process, every collective a blocking MPI call on the host copies of the buffers (device
// memory is host memory here), ordered and bounds-checked on its stream like any other work
// (emu_state.h). All-reduce (sum, avg), all-gather, broadcast and reduce-scatter over float32,
// float64, bf16 (summed in float32) and int32; a communicator spans MPI_COMM_WORLD (or is a
// single rank without MPI). Anything else is refused with a message.
#include <cuda_bf16.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "emu_state.h"

struct ncclComm {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
};

namespace coca::cuda::emu {
namespace {

ncclResult_t refuse(const std::string& why) {
  std::fprintf(stderr, "[cuda-emu] NCCL double: %s\n", why.c_str());
  return ncclInvalidUsage;
}

size_t type_bytes(ncclDataType_t t) {
  switch (t) {
    case ncclFloat64: return 8;
    case ncclFloat32:
    case ncclInt32: return 4;
    case ncclBfloat16: return 2;
    default: return 0;
  }
}

void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const __nv_bfloat16*>(in);
  auto* b = static_cast<__nv_bfloat16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclFloat64: return MPI_DOUBLE;
    case ncclFloat32: return MPI_FLOAT;
    case ncclInt32: return MPI_INT32_T;
    default: return MPI_UINT16_T;  // bf16 bits
  }
}
MPI_Op mpi_sum(ncclDataType_t t) {
  if (t != ncclBfloat16) return MPI_SUM;
  static MPI_Op op = [] {
    MPI_Op o;
    MPI_Op_create(&bf16_sum, 1, &o);
    return o;
  }();
  return op;
}

// sum -> average in place.
void divide(void* p, size_t n, ncclDataType_t t, int by) {
  for (size_t i = 0; i < n; ++i) switch (t) {
      case ncclFloat64: static_cast<double*>(p)[i] /= by; break;
      case ncclFloat32: static_cast<float*>(p)[i] /= static_cast<float>(by); break;
      case ncclInt32: static_cast<int32_t*>(p)[i] /= by; break;
      default: {
        auto* b = static_cast<__nv_bfloat16*>(p);
        b[i] = __float2bfloat16(__bfloat162float(b[i]) / static_cast<float>(by));
      }
    }
}

ncclResult_t check(const char* call, ncclDataType_t t, ncclRedOp_t op, ncclComm_t comm, bool reduces) {
  if (!comm) return refuse(std::string(call) + ": no communicator");
  if (type_bytes(t) == 0)
    return refuse(std::string(call) + ": data type " + std::to_string(static_cast<int>(t)) +
                  " is not emulated (float32, float64, bf16, int32 are)");
  if (reduces && op != ncclSum && op != ncclAvg)
    return refuse(std::string(call) + ": reduction " + std::to_string(static_cast<int>(op)) +
                  " is not emulated (sum and avg are)");
  return ncclSuccess;
}

bool mpi_up() {
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  return up && !down;
}

}  // namespace
}  // namespace coca::cuda::emu

using namespace coca::cuda::emu;

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error (cuda-emu NCCL)";
    case ncclInvalidUsage: return "invalid usage (cuda-emu NCCL: see the line above)";
    case ncclInvalidArgument: return "invalid argument (cuda-emu NCCL)";
    default: return "error (cuda-emu NCCL)";
  }
}
ncclResult_t ncclGetVersion(int* version) {
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}
ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id->internal, 0, sizeof id->internal);
  std::snprintf(id->internal, sizeof id->internal, "cuda-emu-nccl");
  return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t*) {
  if (std::strncmp(id.internal, "cuda-emu-nccl", 13) != 0)
    return refuse("ncclCommInitRankConfig: the unique id did not come from ncclGetUniqueId");
  auto* c = new ncclComm();
  c->rank = rank;
  c->size = nranks;
  if (nranks > 1) {
    if (!mpi_up()) return refuse("ncclCommInitRankConfig: more than one rank needs MPI (run under mpirun)");
    int world = 0, me = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (world != nranks || me != rank)
      return refuse("ncclCommInitRankConfig: the emulation spans MPI_COMM_WORLD only (rank " + std::to_string(rank) +
                    " of " + std::to_string(nranks) + " asked for; world rank " + std::to_string(me) + " of " +
                    std::to_string(world) + ")");
    MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
  }
  *comm = c;
  return ncclSuccess;
}
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  return ncclCommInitRankConfig(comm, nranks, id, rank, nullptr);
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t, ncclResult_t* r) {
  *r = ncclSuccess;
  return ncclSuccess;
}
ncclResult_t ncclCommFinalize(ncclComm_t) { return ncclSuccess; }
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm && comm->comm != MPI_COMM_NULL && mpi_up()) MPI_Comm_free(&comm->comm);
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  delete comm;  // an aborted communicator's MPI duplicate is left to MPI_Finalize
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (ncclResult_t r = check("ncclAllReduce", t, op, comm, true); r != ncclSuccess) return r;
  const size_t bytes = count * type_bytes(t);
  enqueue(stream, "ncclAllReduce", {Span{send, bytes}}, {Span{recv, bytes}});
  if (comm->size == 1) {
    if (send != recv) std::memmove(recv, send, bytes);
    return ncclSuccess;
  }
  MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, static_cast<int>(count), mpi_type(t), mpi_sum(t), comm->comm);
  if (op == ncclAvg) divide(recv, count, t, comm->size);
  return ncclSuccess;
}

ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t t, ncclComm_t comm,
                           cudaStream_t stream) {
  if (ncclResult_t r = check("ncclAllGather", t, ncclSum, comm, false); r != ncclSuccess) return r;
  const size_t bytes = count * type_bytes(t);
  enqueue(stream, "ncclAllGather", {Span{send, bytes}}, {Span{recv, bytes * comm->size}});
  auto* mine = static_cast<char*>(recv) + bytes * comm->rank;
  if (comm->size == 1) {
    if (send != mine) std::memmove(mine, send, bytes);
    return ncclSuccess;
  }
  MPI_Allgather(send == mine ? MPI_IN_PLACE : send, static_cast<int>(count), mpi_type(t), recv,
                static_cast<int>(count), mpi_type(t), comm->comm);
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t t, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  if (ncclResult_t r = check("ncclBroadcast", t, ncclSum, comm, false); r != ncclSuccess) return r;
  const size_t bytes = count * type_bytes(t);
  std::vector<Span> reads;
  if (comm->rank == root) reads.push_back(Span{send, bytes});
  enqueue(stream, "ncclBroadcast", reads, {Span{recv, bytes}});
  if (comm->rank == root && send != recv) std::memmove(recv, send, bytes);
  if (comm->size > 1) MPI_Bcast(recv, static_cast<int>(count), mpi_type(t), root, comm->comm);
  return ncclSuccess;
}

ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t stream) {
  if (ncclResult_t r = check("ncclReduceScatter", t, op, comm, true); r != ncclSuccess) return r;
  const size_t bytes = count * type_bytes(t);
  enqueue(stream, "ncclReduceScatter", {Span{send, bytes * comm->size}}, {Span{recv, bytes}});
  if (comm->size == 1) {
    if (send != recv) std::memmove(recv, send, bytes);
  } else {
    // Reduce from a copy: NCCL allows recv to alias this rank's chunk of send.
    std::vector<char> in(static_cast<const char*>(send), static_cast<const char*>(send) + bytes * comm->size);
    MPI_Reduce_scatter_block(in.data(), recv, static_cast<int>(count), mpi_type(t), mpi_sum(t), comm->comm);
  }
  if (op == ncclAvg) divide(recv, count, t, comm->size);
  return ncclSuccess;
}
