package pipeline

import (
	"os"
	"strings"
	"testing"
)

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("../examples/pipeline-resnet50.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(example) = %v", err)
	}
	if len(d.Stages) != 3 || d.Stages[0].Job.Spec.Containers[0].Image != "nvcr.io/nvidia/pytorch:24.05-py3" ||
		d.Stages[1].Job.Spec.Containers[0].Args[1] != "--int8" || d.Stages[2].Deploy.Canary != 1 ||
		d.Stages[0].Tunables["micro_batch_size"].Max != 512 || d.Stages[0].Params["precision"]["arg"] != "--precision" {
		t.Errorf("example parsed as %+v", d)
	}
}

func TestParseRejects(t *testing.T) {
	base := "name: p\nnamespace: ml\nartifacts: s3://a\nstages:\n"
	job := "  - name: train\n    job: {spec: {containers: [{name: c, image: i}]}}\n"
	tests := []struct{ name, yaml, want string }{
		{"unknown field", base + "  - name: train\n    jobb: {}\n", "unknown field"},
		{"no stages", "name: p\nnamespace: ml\nartifacts: s3://a\n", "stages:"},
		{"bad name", "name: P_1\nnamespace: ml\nartifacts: a\nstages: []\n", "name:"},
		{"both", base + "  - name: x\n    job: {spec: {containers: [{name: c}]}}\n    deploy: {replicas: 1, template: {spec: {containers: [{name: c}]}}}\n", "exactly one"},
		{"deploy not last", base + "  - name: d\n    deploy: {replicas: 1, template: {spec: {containers: [{name: c}]}}}\n" + job, "only the last"},
		{"canary", base + job + "  - name: d\n    deploy: {replicas: 1, canary: 2, template: {spec: {containers: [{name: c}]}}}\n", "canary"},
		{"duplicate", base + job + job, "twice"},
		{"no container", base + "  - name: t\n    job: {spec: {containers: []}}\n", "containers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
