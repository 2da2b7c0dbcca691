/**
 * Outputs of finished jobs used as inputs of new ones (`model: {from_job: <id>, artifact: model}`):
 * looked up with GetJobStatus in the earlier job's result.
 */
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { ContentRef } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { JobState } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { JobService } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { jobStateName } from "./job-names.js";
import { type JobOutputInput, JobSpecError } from "./job-spec-yaml.js";
import { SDK_PROTOCOL_VERSION } from "./protocol-version.js";
import { callOptions } from "./service-client.js";

/**
 * The ContentRef of `output.artifact` in the result of the COMPLETED job `output.jobId`.
 * @throws JobSpecError naming `output.field` when the job is unknown, someone else's, not
 * completed, or has no such artifact; the job server's other errors as they come.
 */
export async function resolveJobOutput(
  jobs: Client<typeof JobService>,
  output: JobOutputInput,
  signal?: AbortSignal,
): Promise<ContentRef> {
  const fail = (message: string): never => {
    throw new JobSpecError([{ path: output.field, message }]);
  };
  let response: Awaited<ReturnType<Client<typeof JobService>["getJobStatus"]>>;
  try {
    response = await jobs.getJobStatus(
      { protocolVersion: SDK_PROTOCOL_VERSION, jobId: output.jobId },
      callOptions(signal),
    );
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.NotFound) {
      return fail(`no job ${JSON.stringify(output.jobId)} on this job server`);
    }
    if (error instanceof ConnectError && error.code === Code.PermissionDenied) {
      return fail(`job ${JSON.stringify(output.jobId)} belongs to another client`);
    }
    throw error;
  }
  const state = response.status?.state ?? JobState.UNSPECIFIED;
  if (state !== JobState.COMPLETED) {
    return fail(
      `job ${JSON.stringify(output.jobId)} is ${jobStateName(state)}; its outputs can be used once it is completed`,
    );
  }
  const artifacts = response.result?.artifacts ?? [];
  const found = artifacts.find((artifact) => artifact.name === output.artifact);
  if (found?.content === undefined) {
    const names = artifacts.map((artifact) => artifact.name).join(", ") || "none";
    return fail(
      `job ${JSON.stringify(output.jobId)} has no output ${JSON.stringify(output.artifact)} (it has: ${names})`,
    );
  }
  return found.content;
}
