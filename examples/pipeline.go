package examples

import _ "embed"

// Pipeline is the example pipeline (train ResNet-50, quantise it with TensorRT,
// serve it with Triton) that the simulated cluster's demo runs.
//
//go:embed pipeline-resnet50.yaml
var Pipeline []byte
