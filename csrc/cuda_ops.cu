// interir._C on a GPU: the launchers of ops_impl.h compiled by nvcc over executor_cuda.cuh.
#include "ops_impl.h"

namespace interir {
namespace impl {

at::DeviceType device_type() { return at::kCUDA; }

}  // namespace impl
}  // namespace interir
