// The host emulation of interir._C: the launchers of ops_impl.h compiled by the host compiler over
// executor_host.h, so the CUDA kernels' per-thread code runs, unchanged, in loops on CPU tensors (tests only).
#include "ops_impl.h"

namespace interir {
namespace impl {

at::DeviceType device_type() { return at::kCPU; }

}  // namespace impl
}  // namespace interir
