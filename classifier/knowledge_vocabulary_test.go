package classifier_test

import (
	"slices"
	"testing"

	"github.com/autofix/autofix/failure"
)

// TestKnowledgeFindsPlatformVocabularies: the cloud, Kafka, Hadoop / Spark and
// distributed-runtime tables find their systems' documented error texts, as the
// systems print them, and stay silent on the look-alikes that mean something else.
func TestKnowledgeFindsPlatformVocabularies(t *testing.T) {
	k := defaultKnowledge(t)
	for _, tc := range []struct {
		name      string
		log       string
		want, not []string
	}{
		// Cloud capacity, quota and reclaim.
		{name: "ec2 capacity", log: "botocore.exceptions.ClientError: An error occurred (InsufficientInstanceCapacity) when calling the RunInstances operation (reached max retries: 4): We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone you requested (us-east-1a).",
			want: []string{"cloud/ec2-insufficient-capacity"}},
		{name: "ec2 vcpu limit", log: "An error occurred (VcpuLimitExceeded) when calling the RunInstances operation: You have requested more vCPU capacity than your current vCPU limit of 32 allows",
			want: []string{"cloud/ec2-limit-exceeded"}},
		{name: "ec2 spot interruption", log: "GET http://169.254.169.254/latest/meta-data/spot/instance-action -> {\"action\": \"terminate\", \"time\": \"2024-05-01T12:00:00Z\"}",
			want: []string{"cloud/ec2-spot-interruption"}},
		{name: "gce stockout", log: "ERROR: (gcloud.compute.instances.create) Could not fetch resource:\n - The zone 'projects/p/zones/us-central1-a' does not have enough resources available to fulfill the request.  '(resource type:compute)'.",
			want: []string{"cloud/gce-zone-resource-pool-exhausted"}},
		{name: "gce stockout code with details", log: "code: ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", want: []string{"cloud/gce-zone-resource-pool-exhausted"}},
		{name: "tpu stockout", log: "ERROR: (gcloud.compute.tpus.tpu-vm.create) {\"code\": 8, \"message\": \"There is no more capacity in the zone \\\"us-central2-b\\\"; you can try in another zone where Cloud TPU Nodes are offered\"}",
			want: []string{"cloud/tpu-no-capacity"}},
		{name: "gcp quota", log: "Quota 'NVIDIA_A100_GPUS' exceeded. Limit: 0.0 in region us-central1.", want: []string{"cloud/gcp-quota-exceeded"}},
		{name: "gce preemption", log: "compute.instances.preempted: Instance was preempted.", want: []string{"cloud/gce-preempted"}},
		{name: "azure allocation", log: "Code=\"ZonalAllocationFailed\" Message=\"Allocation failed. We do not have sufficient capacity for the requested VM size in this zone.\"",
			want: []string{"cloud/azure-allocation-failed"}},
		{name: "azure quota", log: "Code=\"QuotaExceeded\" Message=\"Operation could not be completed as it results in exceeding approved Total Regional Cores quota.\"",
			want: []string{"cloud/azure-quota-exceeded"}},
		{name: "azure spot eviction", log: "{\"EventId\": \"A123\", \"EventType\": \"Preempt\", \"ResourceType\": \"VirtualMachine\"}", want: []string{"cloud/azure-spot-preempt"}},
		{name: "skypilot out of launchable resources", log: "sky.exceptions.ResourcesUnavailableError: Failed to provision all possible launchable resources. Relax the task's resource requirements: 4x AWS(p4d.24xlarge)",
			want: []string{"cloud/skypilot-resources-unavailable"}},
		{name: "a longer name that contains skypilot's error is not it", log: "registered handler SkyResourcesUnavailableErrorHandler for provisioning events", not: []string{"cloud/skypilot-resources-unavailable"}},
		{name: "glue subnet out of addresses", log: "Status: FAILED\nError: The specified subnet does not have enough free addresses to satisfy the request",
			want: []string{"cloud/subnet-addresses-exhausted"}},
		{name: "eks cni out of addresses", log: "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to set up sandbox container network: add cmd: failed to assign an IP address to container",
			want: []string{"cloud/subnet-addresses-exhausted"}},
		{name: "a node's addresses are no exhaustion", log: "kubectl get nodes -o wide lists each node's internal IP addresses; the subnet has free addresses", not: []string{"cloud/subnet-addresses-exhausted"}},
		{name: "spark class version mismatch", log: "java.io.InvalidClassException: org.apache.commons.lang3.time.FastDateFormat; local class incompatible: stream classdesc serialVersionUID = 2, local class serialVersionUID = 1",
			want: []string{"exception/ClassNotFoundException"}},
		{name: "nccl infiniband completion error", log: "NET/IB : Got completion from peer 10.0.0.2<43315> with error 12, opcode 1, len 32478, vendor err 129", want: []string{"accelerator/nccl-ib-completion-error"}},
		{name: "nextflow process time limit", log: "Caused by:\n  Process exceeded running time limit (8h)", want: []string{"message/ran-out-of-time"}},
		{name: "gunicorn worker timeout", log: "[2023-09-22 23:49:15 +0530] [1305] [CRITICAL] WORKER TIMEOUT (pid:2821)", want: []string{"message/ran-out-of-time"}},
		{name: "slurm node failure", log: "JobState=NODE_FAIL Reason=NodeFail", want: []string{"message/spot-reclaim"}},
		{name: "databricks stockout", log: "Cluster terminated. Reason: CLOUD_PROVIDER_RESOURCE_STOCKOUT", want: []string{"cloud/databricks-cloud-capacity"}},
		{name: "a quota that asks for limits is no capacity", log: "pods \"x\" is forbidden: failed quota: compute-resources: must specify limits.memory",
			not: []string{"cloud/gcp-quota-exceeded", "cloud/azure-quota-exceeded"}},
		{name: "an azure resource-group count quota is not the core quota", log: "Code=ResourceQuotaExceeded", not: []string{"cloud/azure-quota-exceeded"}},
		{name: "the gke node pool quota code", log: "GCE_QUOTA_EXCEEDED", want: []string{"cloud/gcp-quota-exceeded"}},
		{name: "metal out of memory", log: "libc++abi: terminating due to uncaught exception of type std::runtime_error: [METAL] Command buffer execution failed: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)",
			want: []string{"accelerator/metal-out-of-memory"}},
		{name: "sagemaker account limit with a hyphen", log: "botocore.errorfactory.ResourceLimitExceeded: An error occurred (ResourceLimitExceeded) when calling the CreateProcessingJob operation: The request delta of 1025 GBs is greater than the account-level service-limit of 1024 GBs.",
			want: []string{"cloud/sagemaker-resource-limit"}},
		// Databases and table formats.
		{name: "postgres out of memory through pgx", log: "map[dsType:postgresql error:ERROR: out of memory (SQLSTATE 53200) query:", want: []string{"database/postgres-out-of-memory"}},
		{name: "postgres disk full through psycopg", log: "psycopg2.errors.DiskFull: could not extend file \"base/16384/2619\": No space left on device", want: []string{"database/postgres-disk-full"}},
		{name: "postgres starting up", log: "FATAL:  the database system is starting up (SQLSTATE 57P03)", want: []string{"database/postgres-cannot-connect-now"}},
		{name: "postgres out of connection slots", log: "FATAL: remaining connection slots are reserved for non-replication superuser connections", want: []string{"database/postgres-too-many-connections"}},
		{name: "another sqlstate is none of them", log: "ERROR: duplicate key value violates unique constraint \"pk\" (SQLSTATE 23505); 53200 rows copied",
			not: []string{"database/postgres-out-of-memory", "database/postgres-disk-full", "database/postgres-cannot-connect-now", "database/postgres-too-many-connections"}},
		{name: "clickhouse single bit flip", log: "DB::Exception: Checksum doesn't match: corrupted data. Reference: 6a4b. Actual: bc6f. Size of compressed block: 165475. The mismatch is caused by single bit flip in data block at byte 160785, bit 0. This is most likely due to hardware failure.",
			want: []string{"database/clickhouse-bit-flip"}},
		{name: "a clickhouse checksum error without the bit flip is not called hardware", log: "DB::Exception: Checksum doesn't match: corrupted data. Reference: 6a4b. Actual: bc6f. Size of compressed block: 4096",
			not: []string{"database/clickhouse-bit-flip"}},
		{name: "iceberg lost a commit to another writer", log: "org.apache.iceberg.exceptions.CommitFailedException: Cannot commit: Base metadata location 's3://w/t/metadata/00012-a.metadata.json' is not same as the current table metadata location 's3://w/t/metadata/00013-b.metadata.json' for db.t",
			want: []string{"dataplatform/iceberg-commit-conflict"}},
		{name: "an iceberg commit refused for its schema is no conflict", log: "org.apache.iceberg.exceptions.CommitFailedException: Commit failed: Requirement failed: current schema changed: expected id 3 != 4",
			not: []string{"dataplatform/iceberg-commit-conflict"}},
		{name: "mysql lock wait timeout", log: "(pymysql.err.InternalError) (1205, 'Lock wait timeout exceeded; try restarting transaction')", want: []string{"database/mysql-lock-wait-timeout"}},
		{name: "elasticsearch flood stage", log: "{'type': 'cluster_block_exception', 'reason': 'index [docs] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];'}",
			want: []string{"database/search-engine-disk-block"}},
		{name: "vespa feed block", log: "ReturnCode(NO_SPACE, External feed is blocked due to resource exhaustion: disk on node 0 [content] (0.781 > 0.750))", want: []string{"database/search-engine-disk-block"}},
		{name: "http 507", log: "requests.exceptions.HTTPError: 507 Server Error: Insufficient Storage for url: http://index:8081/document/v1/", want: []string{"http/507"}, not: []string{"http/5xx"}},
		{name: "a clickhouse error number 507 is no http status", log: "Code: 507. DB::Exception: Sharding key is not deterministic. (UNABLE_TO_SKIP_UNUSED_SHARDS); returned 507 rows", not: []string{"http/507", "http/5xx"}},
		{name: "httr 503", log: "Request failed [503]. Retrying in 1.6 seconds...", want: []string{"http/5xx"}},
		{name: "gdal free space check", log: "ERROR 3: out.tif: Free disk space available is 6349627392 bytes, whereas 50606296192 are at least necessary.", want: []string{"message/disk-space-check"}},
		{name: "earth engine computation timeout", log: "HttpError: <HttpError 400 when requesting https://earthengine.googleapis.com/v1/projects/p/value:compute returned \"Computation timed out.\">", want: []string{"message/ran-out-of-time"}},
		// Kafka.
		{name: "kafka leader election", log: "org.apache.kafka.common.errors.NotLeaderOrFollowerException: For requests intended only for the leader, this error indicates that the broker is not the current leader.",
			want: []string{"kafka/leader-not-available"}},
		{name: "librdkafka leader", log: "KafkaError{code=LEADER_NOT_AVAILABLE,val=5,str=\"Broker: Leader not available\"}", want: []string{"kafka/leader-not-available"}},
		{name: "kafka transport", log: "cimpl.KafkaException: KafkaError{code=_TRANSPORT,val=-195,str=\"Local: Broker transport failure\"}", want: []string{"kafka/network-exception"}},
		{name: "kafka missing topic", log: "org.apache.kafka.common.errors.UnknownTopicOrPartitionException: This server does not host this topic-partition.",
			want: []string{"kafka/unknown-topic-or-partition"}},
		{name: "kafka record too large", log: "org.apache.kafka.common.errors.RecordTooLargeException: The message is 2097152 bytes when serialized which is larger than 1048576, which is the value of the max.request.size configuration.",
			want: []string{"kafka/record-too-large"}},
		{name: "kafka authorization", log: "org.apache.kafka.common.errors.TopicAuthorizationException: Not authorized to access topics: [events]", want: []string{"kafka/authorization-failed"}},
		// Hadoop, YARN, Spark, Hive.
		{name: "yarn physical memory", log: "Container [pid=8788,containerID=container_1598507699008_0094_01_000010] is running beyond physical memory limits. Current usage: 9.8 GB of 9.8 GB physical memory used",
			want: []string{"dataplatform/yarn-container-memory-kill"}},
		{name: "spark on yarn memory", log: "ExecutorLostFailure (executor 7 exited caused by one of the running tasks) Reason: Container killed by YARN for exceeding physical memory limits. 12.1 GB of 12 GB physical memory used.",
			want: []string{"dataplatform/yarn-container-memory-kill"}},
		{name: "yarn lost node", log: "Reason: Container marked as failed: container_e46_1545125871120_21448_01_000282 on host: 10.160.140.153. Exit status: -100. Diagnostics: Container released on a *lost* node",
			want: []string{"dataplatform/yarn-container-lost-node"}},
		{name: "yarn am limit", log: "diagnostics: Application is added to the scheduler and is not yet activated. Queue's AM resource limit exceeded.", want: []string{"dataplatform/yarn-application-waiting"}},
		{name: "hdfs standby", log: "org.apache.hadoop.ipc.RemoteException(org.apache.hadoop.ipc.StandbyException): Operation category READ is not supported in state standby",
			want: []string{"dataplatform/hdfs-standby"}},
		{name: "spark futures", log: "java.util.concurrent.TimeoutException: Futures timed out after [300 seconds]", want: []string{"dataplatform/spark-futures-timed-out"}},
		{name: "a longer exit status is another one", log: "Exit status: -1000. Diagnostics: invalid", not: []string{"dataplatform/yarn-container-lost-node"}},
		// Ray, Dask, Airflow, W&B, Kubernetes.
		{name: "ray oom", log: "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.", want: []string{"distributed/ray-out-of-memory"}},
		{name: "ray node dead", log: "The node with node id: 5ad7 and address: 10.0.0.3 has been marked dead because the detector has missed too many heartbeats from it.",
			want: []string{"distributed/ray-node-died"}},
		{name: "dask memory budget", log: "distributed.nanny.memory - WARNING - Worker tcp://127.0.0.1:49477 (pid=59029) exceeded 95% memory budget. Restarting...",
			want: []string{"distributed/dask-memory-budget"}},
		{name: "airflow zombie", log: "ERROR - Detected zombie job: {'full_filepath': '/opt/dags/etl.py', 'msg': 'Detected as zombie'}", want: []string{"distributed/airflow-zombie"}},
		{name: "wandb init", log: "wandb: ERROR Run initialization has timed out after 90.0 sec.", want: []string{"distributed/wandb-communication"}},
		{name: "pod deleted under a client", log: "HTTP response body: {\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"train-0\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"train-0\",\"kind\":\"pods\"},\"code\":404}",
			want: []string{"kubernetes/pod-deleted"}},
		{name: "a configmap not found is no pod deletion", log: "Error from server (NotFound): configmaps \"settings\" not found", not: []string{"kubernetes/pod-deleted"}},
		// Waves 23-27: cloud capacity, media, edge devices, databases, hosted-model SDKs,
		// exchanges, Node, Go and Rust runtimes, CUDA.
		{name: "eks zone without capacity", log: "Cannot create cluster 'app-staging' because us-east-1e, the targeted availability zone, does not currently have sufficient capacity to support the cluster.",
			want: []string{"cloud/eks-zone-capacity"}},
		{name: "nvenc out of sessions", log: "[h264_nvenc @ 0x5601aa5b40c0] OpenEncodeSessionEx failed: out of memory (10)\n[h264_nvenc @ 0x5601aa5b40c0] No NVENC capable devices found",
			want: []string{"accelerator/nvenc-out-of-memory"}},
		{name: "edge tpu usb transfer", log: "F :838] transfer on tag 1 failed. Abort. Deadline exceeded: USB transfer error 2 [LibUsbDataOutCallback]",
			want: []string{"accelerator/edgetpu-usb-transfer"}},
		{name: "ffmpeg without the encoder", log: "[vost#0:0 @ 0x34104900] Unknown encoder 'libx264'\n[vost#0:0 @ 0x34104900] Error selecting an encoder\nError opening output files: Encoder not found",
			want: []string{"message/ffmpeg-codec-missing"}},
		{name: "mysql duplicate key", log: "errorCode: '1062', errorMessage: Duplicate entry '5' for key 'PRIMARY'", want: []string{"database/sql-constraint-violation"}},
		{name: "postgres value too long", log: "psycopg2.DataError: value too long for type character varying(255)", want: []string{"database/sql-constraint-violation"}},
		{name: "redshift disk full", log: "java.sql.SQLException: [Amazon](500310) Invalid operation: Disk Full", want: []string{"database/redshift-disk-full"}},
		{name: "openai connection error", log: "    raise APIConnectionError(request=request) from err\nopenai.APIConnectionError: Connection error.", want: []string{"exception/llm-sdk-transient"}},
		{name: "anthropic overloaded", log: "Sample error (id: 42, epoch: 1): {'type': 'error', 'error': {'details': None, 'type': 'api_error', 'message': 'Overloaded'}}", want: []string{"exception/llm-api-overloaded"}},
		{name: "an overloaded method is no overloaded api", log: "error: call of overloaded 'abs(long int)' is ambiguous", not: []string{"exception/llm-api-overloaded"}},
		{name: "ccxt throttled", log: "Could not load ticker history due to DDoSProtection. Message: bittrex GET 429", want: []string{"exception/ccxt-network-error"}},
		{name: "node module missing from an image", log: "Error [ERR_MODULE_NOT_FOUND]: Cannot find module '/app/bootstrap-env.mjs' imported from /app/run-standalone.mjs\n    code: 'ERR_MODULE_NOT_FOUND'", want: []string{"exception/node-module-not-found"}},
		{name: "go stack overflow", log: "runtime: goroutine stack exceeds 1000000000-byte limit\nfatal error: stack overflow", want: []string{"exception/go-runtime-fatal"}},
		{name: "go out of memory is no program fault", log: "fatal error: runtime: out of memory", not: []string{"exception/go-runtime-fatal"}},
		{name: "rust unwrap", log: "thread '<unnamed>' panicked at 'called `Result::unwrap()` on an `Err` value: ()', common/k8s/src/middleware/metadata.rs:171:18", want: []string{"exception/rust-unwrap-panic"}},
		{name: "cuda system not ready", log: "RuntimeError: Unexpected error from cudaGetDeviceCount(). Error 802: system not yet initialized", want: []string{"accelerator/cudaErrorSystemNotReady"}},
		{name: "elasticsearch's old read-only block", log: `retrying failed action with response code: 403 ({"type"=>"cluster_block_exception", "reason"=>"blocked by: [FORBIDDEN/12/index read-only / allow delete (api)];"})`, want: []string{"database/search-engine-disk-block"}},
		{name: "vespa over its disk limit", log: `ReturnCode(NO_SPACE, Put operation rejected for document 'id:ns:doc::1': 'diskLimitReached: { action: "add more content nodes", reason: "disk used (0.815407) > disk limit (0.8)"}')`, want: []string{"database/search-engine-disk-block"}},
		{name: "elasticsearch's parent circuit breaker", log: "ElasticsearchException[Elasticsearch exception [type=circuit_breaking_exception, reason=[parent] Data too large, data for [indices:data/write/bulk[s]] would be [31125200908/28.9gb], which is larger than the limit of [28991029248/27gb]", want: []string{"database/search-engine-circuit-breaker"}},
		{name: "brod's message too large", log: "gen_server <0.1771.0> terminated with reason: {not_retriable,{produce_response_error,<<\"mqtt_dev2\">>,1,-1,'MessageTooLarge'}} in brod_producer:handle_info/2 line 317", want: []string{"kafka/record-too-large"}},
		{name: "nats payload over the server's limit", log: "mysql.extractor: unexpected error on publish, got nats: maximum payload exceeded", want: []string{"kafka/nats-max-payload"}},
		{name: "cuda graph capture with work left on another stream", log: "Exception: Capture cuda graph failed: CUDA error: capturing stream has unjoined work", want: []string{"accelerator/cudaErrorStreamCapture"}},
		{name: "onnx runtime given another batch size", log: "ai.onnxruntime.OrtException: Error code - ORT_INVALID_ARGUMENT - message: Got invalid dimensions for input: images for the following indices\n index: 0 Got: 1 Expected: 64", want: []string{"message/model-input-shape"}},
		{name: "an encoder that is found is no missing codec", log: "Stream mapping: Stream #0:0 -> #0:0 (h264 (native) -> h264 (libx264)); encoder found, encoding at 1.2x", not: []string{"message/ffmpeg-codec-missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &failure.Event{Failure: failure.Signals{Reason: "Error", ExitCode: 1, LogTail: tc.log}}
			got := hitKeys(k.Find(ev))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("Find = %v, want %s among them", got, w)
				}
			}
			for _, n := range tc.not {
				if slices.Contains(got, n) {
					t.Errorf("Find = %v, want no %s", got, n)
				}
			}
		})
	}
}
