package pipeline

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/policy"
)

const hostile = `
name: vision
namespace: ml
artifacts: s3://m
stages:
  - name: train
    job: {spec: {containers: [{name: train, image: pytorch}]}}
  - name: compress
    job:
      spec:
        hostPID: true
        containers: [{name: q, image: trt}]
        volumes: [{name: root, hostPath: {path: /}}]
  - name: deploy
    deploy:
      replicas: 1
      template:
        spec:
          containers:
            - name: server
              image: triton
              securityContext: {privileged: true}
`

func TestCheckPodsNamesTheField(t *testing.T) {
	def := mustParse(t, hostile)
	tests := []struct {
		name  string
		allow policy.Pods
		want  []string // parts of the error; none: allowed
	}{
		{"nothing allowed", policy.Pods{}, []string{"stages[1].job.spec.hostPID: true is refused (policy.pods.allowHostNamespaces is off)",
			`stages[1].job.spec.volumes[0].hostPath: "/" is refused (policy.pods.allowHostPath is off)`}},
		{"host namespaces and hostPath allowed", policy.Pods{AllowHostNamespaces: true, AllowHostPath: true},
			[]string{"stages[2].deploy.template.spec.containers[0].securityContext.privileged: true is refused (policy.pods.allowPrivileged is off)"}},
		{"all allowed", policy.Pods{AllowHostNamespaces: true, AllowHostPath: true, AllowPrivileged: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := def.CheckPods(tt.allow)
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("CheckPods = %v, want nil", err)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("CheckPods = %v, want an error containing %q", err, w)
				}
			}
		})
	}
}

func TestStepRefusesBeforeCreatingAnything(t *testing.T) {
	def := mustParse(t, hostile)
	c := fake.NewClientset()
	d := &Driver{Client: c}
	st, err := d.Step(context.Background(), def, "run1")
	if err != nil {
		t.Fatalf("Step = %v", err)
	}
	if n := len(c.Actions()); n != 0 {
		t.Errorf("Step made %d API calls (%q); want none", n, writes(c))
	}
	got := []Phase{}
	for _, s := range st.Stages {
		got = append(got, s.Phase)
	}
	if st.Phase != Failed || !slices.Equal(got, []Phase{Pending, Failed, Pending}) ||
		!strings.Contains(st.Stages[1].Message, "the pod policy refuses the stage's template: stages[1].job.spec.hostPID") {
		t.Errorf("Step = %+v; want failed at compress, naming stages[1].job.spec.hostPID", st)
	}
	// Allowed by the policy, the first stage starts.
	d.Pods = policy.Pods{AllowHostNamespaces: true, AllowHostPath: true, AllowPrivileged: true}
	if st, err := d.Step(context.Background(), def, "run1"); err != nil || st.Phase != Running {
		t.Errorf("Step with everything allowed = %+v, %v; want running", st, err)
	}
	if got, want := writes(c), []string{"create jobs vision-run1-train"}; !slices.Equal(got, want) {
		t.Errorf("Step with everything allowed wrote %q, want %q", got, want)
	}
}

func TestRollbackRefusesATemplateThePodPolicyRefuses(t *testing.T) {
	ctx := context.Background()
	l, a := ours("vision", "run2")
	a[AnnotationStarted] = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	a["deployment.kubernetes.io/revision"] = "2"
	stable := serving("vision", "run2", l, a, false)
	rs := func(rev string, privileged bool) *appsv1.ReplicaSet {
		r := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "vision-" + rev, Namespace: "ml",
			Labels:          map[string]string{"app.kubernetes.io/name": "vision"},
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": rev},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(stable, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
			Spec: appsv1.ReplicaSetSpec{Template: *stable.Spec.Template.DeepCopy()}}
		r.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &privileged}
		return r
	}
	for _, tt := range []struct {
		name       string
		privileged bool
		allow      bool
		want       string
		wrote      []string
	}{
		{"a refused template", true, false, "not rolled back to revision 1: the pod policy refuses its template: " +
			"replicaset vision-1 spec.template.spec.containers[0].securityContext.privileged", nil},
		{"an allowed one", true, true, "rolled back to revision 1", []string{"update deployments vision"}},
		{"a safe one", false, false, "rolled back to revision 1", []string{"update deployments vision"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset(stable.DeepCopy(), rs("1", tt.privileged), rs("2", false))
			d := &Driver{Client: c}
			d.Pods.AllowPrivileged = tt.allow
			st, err := d.Step(ctx, deployOnly(t, 0), "run2")
			if err != nil || st.Phase != Failed || !strings.Contains(st.Stages[0].Message, tt.want) {
				t.Errorf("Step = %+v, %v; want failed, %q", st, err, tt.want)
			}
			if got := writes(c); !slices.Equal(got, tt.wrote) {
				t.Errorf("Step wrote %q, want %q", got, tt.wrote)
			}
		})
	}
}
