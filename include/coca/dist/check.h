#pragma once
// COCA_MPI_CHECK(call): every MPI call goes through it; a failure throws coca::Error naming the
// MPI error string, the call, the file and the line. (CUDA and NCCL: coca/kernels/cuda/check.h.)
#include <mpi.h>

#include <string>

#include "coca/tensor/error.h"

#define COCA_MPI_CHECK(call)                                                                          \
  do {                                                                                                \
    const int mpi_err_ = (call);                                                                      \
    if (mpi_err_ != MPI_SUCCESS) {                                                                    \
      char mpi_msg_[MPI_MAX_ERROR_STRING];                                                            \
      int mpi_len_ = 0;                                                                               \
      MPI_Error_string(mpi_err_, mpi_msg_, &mpi_len_);                                                \
      throw ::coca::Error(::coca::str_cat("MPI error ", std::string(mpi_msg_, mpi_len_), " in ", #call, \
                                          " at ", __FILE__, ":", __LINE__));                          \
    }                                                                                                 \
  } while (0)
