"""A standard gRPC client that is not ours (Python grpcio) loads docs/service-config.json as
is and sends one step total while the server's database is away: grpcio retries
UNAVAILABLE by the service config (waiting as the server's pushback says), and the call
succeeds once the database is back. Run by retry-contract.sh.

usage: grpcio_retry.py ADDR DEVICE_TOKEN SERVICE_CONFIG STUBS_DIR
"""

import datetime
import sys

addr, token, config_path, stubs = sys.argv[1:5]
sys.path.insert(0, stubs)

import grpc  # noqa: E402
from coachfit.v1 import ingest_pb2, ingest_pb2_grpc  # noqa: E402
from google.protobuf import timestamp_pb2  # noqa: E402

with open(config_path) as f:
    service_config = f.read()
channel = grpc.insecure_channel(
    addr, options=[("grpc.service_config", service_config), ("grpc.enable_retries", 1)]
)
observed = timestamp_pb2.Timestamp()
observed.FromDatetime(datetime.datetime(2026, 3, 1, 20, tzinfo=datetime.timezone.utc))
request = ingest_pb2.IngestStepsRequest(
    samples=[ingest_pb2.StepsSample(date="2026-03-01", total_steps=4321, observed_at=observed)]
)
response = ingest_pb2_grpc.IngestServiceStub(channel).IngestSteps(
    request, metadata=[("authorization", f"Bearer {token}")]
)
print(f"accepted={response.accepted} duplicates={response.duplicates}")
