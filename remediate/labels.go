package remediate

// ResourceGPU is the extended resource of NVIDIA's device plugin.
const ResourceGPU = "nvidia.com/gpu"
