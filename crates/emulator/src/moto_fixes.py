"""moto_server with fixes for where moto 5.2.5 answers differently from AWS.

TEST AND LOCAL-MODE SCAFFOLDING, NOT AWS. Each fix makes the emulator answer the way AWS documents,
so that the tool's reads of the live state work on the emulator; none of them fakes progress or
success. Every fix has a test (crates/aws/tests/it/emulator.rs) that fails without it.

1. S3 GetBucketVersioning: moto answers with a <GetBucketVersioningResponse> root, which the AWS
   SDK for Rust refuses to parse; AWS answers <VersioningConfiguration>.
2. CodeDeploy GetDeploymentGroup: moto echoes `autoScalingGroups` as the list of names it was
   given, which serializes as [{}]; AWS answers [{"name": ..., "hook": ...}].
3. Policy statements with a Condition: moto treats a condition on a key it does not supply as
   holding (S3 supplies none), and answers DENIED when a condition does not hold. So a bucket
   policy that denies only plain-HTTP requests (`aws:SecureTransport` false) denies every request.
   On AWS a condition on an absent key does not hold (except `...IfExists` and `Null`), and a
   statement whose condition does not hold does not apply. The fix does that.
4. CodeBuild UpdateProject: moto has none (HTTP 500). AWS replaces the settings it is given
   (source, artifacts, environment, service role, timeout, logs config, tags) and answers the
   project. The fix does that on moto's stored project; it runs no build.
"""
import sys

import moto

assert moto.__version__ == "5.2.5", f"these fixes are written for moto 5.2.5, not {moto.__version__}"

from moto.s3 import responses as s3_responses  # noqa: E402
from moto.codedeploy import responses as codedeploy_responses  # noqa: E402
from xml.sax.saxutils import escape  # noqa: E402


def get_bucket_versioning(self):
    self.data["Action"] = "GetBucketVersioning"
    status = self.backend.get_bucket_versioning(self.bucket_name)
    inner = f"<Status>{escape(status)}</Status>" if status else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>'
    )
    return 200, {"Content-Type": "application/xml"}, body


s3_responses.S3Response.get_bucket_versioning = get_bucket_versioning

_deployment_group_info = codedeploy_responses._deployment_group_info


def deployment_group_info(deployment_group):
    info = _deployment_group_info(deployment_group)
    info["autoScalingGroups"] = [
        group if isinstance(group, dict) else {"name": group} for group in deployment_group.auto_scaling_groups
    ]
    return info


codedeploy_responses._deployment_group_info = deployment_group_info

from moto.iam.access_control import IAMPolicyStatement, PermissionResult  # noqa: E402

_is_action_permitted = IAMPolicyStatement.is_action_permitted


def condition_holds(conditions, values):
    values = values or {}
    for operator, keys in conditions.items():
        if operator.endswith("IfExists") or operator == "Null":
            continue
        if any(key not in values for key in keys):
            return False
    return True


def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
    conditions = self._statement.get("Condition")
    if conditions and not (
        condition_holds(conditions, incoming_condition_values) and self._check_conditions(incoming_condition_values)
    ):
        return PermissionResult.NEUTRAL
    return _is_action_permitted(self, action, resource, principal, incoming_condition_values)


IAMPolicyStatement.is_action_permitted = is_action_permitted

from moto.codebuild import responses as codebuild_responses  # noqa: E402
from moto.codebuild.exceptions import ResourceNotFoundException  # noqa: E402
from moto.core.utils import unix_time  # noqa: E402

UPDATABLE = {
    "source": "source",
    "artifacts": "artifacts",
    "environment": "environment",
    "serviceRole": "serviceRole",
    "timeoutInMinutes": "timeoutInMinutes",
    "logsConfig": "logsConfig",
    "tags": "tags",
    "description": "description",
}


def update_project(self):
    name = self._get_param("name")
    project = self.codebuild_backend.codebuild_projects.get(name)
    if project is None:
        raise ResourceNotFoundException(f"Project cannot be found: {name}")
    for param, key in UPDATABLE.items():
        value = self._get_param(param)
        if value is not None:
            project.project_metadata[key] = value
            if param == "serviceRole":
                # As CreateProject does: a role name stands for the account's role of that name.
                if not value.startswith("arn:"):
                    value = f"arn:aws:iam::{self.current_account}:role/service-role/{value}"
                    project.project_metadata[key] = value
                project.service_role = value
            if param == "tags":
                project.tags = value
    project.project_metadata["lastModifiedDate"] = unix_time()
    return codebuild_responses.ActionResult({"project": project.project_metadata})


codebuild_responses.CodeBuildResponse.update_project = update_project

if __name__ == "__main__":
    from moto.server import main

    # Not a fix of moto's: its request log goes to a file, so without terminal colour codes.
    import werkzeug.serving

    werkzeug.serving._log_add_style = False

    sys.exit(main())
