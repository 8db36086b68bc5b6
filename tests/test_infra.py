"""infra/template.yaml: lint-clean, no unjustified checkov failure, transformed offline by the SAM
translator, and the result created in a moto server's CloudFormation."""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import subprocess
import sys
import time as time_module
import zipfile
from types import SimpleNamespace
from pathlib import Path

import boto3
import pytest
import yaml

from tests.moto_server import moto_server  # noqa: F401 - fixture
from tests.test_store_dynamodb import moto_endpoint  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "template.yaml"


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !GetAtt ...) as their long forms."""


def _intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


class OfflinePolicies:
    """The translator asks IAM for managed policy ARNs; offline it uses its bundled map."""

    def load(self) -> dict:
        return {}


@pytest.fixture(autouse=True)
def aws_region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the translator builds ARNs for a region


def transformed(code_uri: str = "s3://gate-artifacts/gate-lambda.zip") -> dict:
    """What `sam deploy` sends to CloudFormation: CodeUri uploaded (as `sam package` does), then
    the Serverless transform applied."""
    from samtranslator.translator.transform import transform

    template = load_template()
    template["Resources"]["AnalyzerFunction"]["Properties"]["CodeUri"] = code_uri
    return transform(copy.deepcopy(template), {}, OfflinePolicies())


def test_cfn_lint_is_clean():
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.slow("checkov in its own virtualenv")  # building it is minutes of silence: under the slow header
def test_checkov_finds_no_unjustified_failure():
    """infra/checkov.sh runs checkov from its own venv (made on first use, ~1 min)."""
    if shutil.which("python3") is None:
        pytest.skip("python3 needed for checkov's venv")
    run = subprocess.run(["bash", str(ROOT / "infra" / "checkov.sh")], capture_output=True, text=True,
                         timeout=900, cwd=ROOT)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    assert "Failed checks: 0" in out and "Passed checks: " in out
    skips = [skip for r in load_template()["Resources"].values()
             for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", [])]
    for skip in skips:
        assert len(skip.get("comment", "")) > 40, f"{skip['id']}: every skip says why"
    # Every skip in the template is one checkov ran and would have failed: none is dead.
    assert f"Skipped checks: {len(skips)}" in out


def test_the_sam_transform_yields_the_stack_jenkins_needs():
    resources = transformed()["Resources"]
    by_type: dict[str, list[str]] = {}
    for name, resource in resources.items():
        by_type.setdefault(resource["Type"], []).append(name)
    assert by_type["AWS::Lambda::Function"] == ["AnalyzerFunction"]
    assert by_type["AWS::Lambda::Url"] == ["AnalyzerFunctionUrl"]
    assert by_type["AWS::StepFunctions::StateMachine"] == ["GateLoop"]
    assert sorted(by_type["AWS::DynamoDB::Table"]) == ["EvaluationsTable", "IdempotencyTable"]
    assert by_type["AWS::S3::Bucket"] == ["ReportsBucket"]
    assert by_type["AWS::SecretsManager::Secret"] == ["GateSecret"]

    function = resources["AnalyzerFunction"]["Properties"]
    assert (function["Runtime"], function["Architectures"], function["Handler"]) == \
        ("python3.12", ["x86_64"], "handler.lambda_handler")
    assert function["MemorySize"] >= 1024 and function["Timeout"] <= 900
    assert resources["AnalyzerFunctionUrl"]["Properties"]["AuthType"] == "AWS_IAM"
    env = function["Environment"]["Variables"]
    assert {"GATE_STORE_TABLE", "GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID"} <= set(env)
    assert not any(k in env for k in ("DD_API_KEY", "DD_APP_KEY", "SLACK_WEBHOOK_URL")), "keys stay in the secret"

    # Least privilege: the analyzer's own statements name their resources; only the CloudWatch
    # and elbv2 reads (no resource-level permissions) use "*", and nothing may write to an ASG.
    role = resources["AnalyzerFunctionRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert not any(a.endswith("*") for a in actions), s
        if s["Resource"] == "*":
            assert set(actions) <= {"cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
                                    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
                                    "elasticloadbalancing:DescribeTargetHealth"}, s
        assert not any(a.startswith("autoscaling:") for a in actions)
    tables = {json.dumps(s["Resource"]) for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])}
    assert tables == {json.dumps({"Fn::GetAtt": ["EvaluationsTable", "Arn"]}),
                      json.dumps({"Fn::GetAtt": ["IdempotencyTable", "Arn"]})}

    ttl = {n: resources[n]["Properties"]["TimeToLiveSpecification"] for n in by_type["AWS::DynamoDB::Table"]}
    assert ttl == {"EvaluationsTable": {"AttributeName": "expires_at", "Enabled": True},
                   "IdempotencyTable": {"AttributeName": "expiration", "Enabled": True}}


def test_the_stack_needs_only_capability_iam_as_both_readmes_deploy_it():
    """No IAM resource is given a name, so `--capabilities CAPABILITY_IAM` is enough, and the
    README and infra/README say the same `sam deploy`."""
    iam = {k: r for k, r in transformed()["Resources"].items() if r["Type"].startswith("AWS::IAM::")}
    assert iam, "no IAM resource: the test proves nothing"
    for name, resource in iam.items():
        named = [p for p in resource.get("Properties", {}) if p.endswith("Name") and p != "PolicyName"]
        assert not named, (name, named)
    commands = {readme: re.findall(r"sam deploy --guided[^\n`]*", (ROOT / readme).read_text())
                for readme in ("README.md", "infra/README.md")}
    assert all(c == ["sam deploy --guided --template-file infra/template.yaml --capabilities CAPABILITY_IAM"]
               for c in commands.values()), commands


def test_the_loop_evaluates_waits_and_stops_on_a_decision():
    machine = transformed()["Resources"]["GateLoop"]["Properties"]
    separator, lines = machine["DefinitionString"]["Fn::Join"]
    definition = json.loads(separator.join(lines))
    assert definition["TimeoutSeconds"] == 8 * 86400
    states = definition["States"]
    assert states["Evaluate"]["Resource"] == "arn:aws:states:::lambda:invoke"
    assert states["Evaluate"]["Next"] == "PinDeploy" and states["WaitInterval"]["Next"] == "Evaluate"
    assert states["PinDeploy"]["Default"] == states["Pinned"]["Next"] == "Route"
    assert states["WaitInterval"]["SecondsPath"] == "$.wait_seconds"
    assert definition["StartAt"] == "CheckInput" and states["NowNotAllowed"]["Type"] == "Fail"
    assert states["HttpEventNotAllowed"]["Type"] == "Fail"
    assert states["UndecidedWithoutInterval"]["Parameters"]["wait_seconds"] == 60
    assert states["Undecided"]["Parameters"]["wait_seconds.$"] == "$.result.answer.interval_seconds"
    assert states["CountError"]["Parameters"]["wait_seconds"] == 60
    routes = {json.dumps(c, sort_keys=True): c["Next"] for c in states["Route"]["Choices"]}
    assert sum(1 for next_state in routes.values() if next_state == "Decided") >= 3
    assert {"Undecided", "CountError"} <= set(routes.values())
    assert states["Route"]["Default"] == "NotAVerdict" and states["Decided"]["End"]
    assert states["NotAVerdict"]["Parameters"]["exit_code"] == 4 and states["NotAVerdict"]["End"]
    assert states["CouldNotJudge"]["Parameters"]["exit_code"] == 4


def test_the_loop_outlives_the_longest_lifetime_a_policy_allows():
    """A 7-day canary (the policy allows it) must end judged, by its final answer, not TIMED_OUT
    by the loop's own hard stop (24 h before): the stop leaves a day beyond the lifetime."""
    from gate.errors import PolicyError
    from gate.policy import MAX_LIFETIME, parse_policy

    machine = transformed()["Resources"]["GateLoop"]["Properties"]
    separator, lines = machine["DefinitionString"]["Fn::Join"]
    timeout = json.loads(separator.join(lines))["TimeoutSeconds"]
    policy = {"name": "web", "source": {"type": "cloudwatch"}, "canary": {"scope": "c"},
              "metrics": [{"name": "cpu", "kind": "gauge"}]}
    assert parse_policy({**policy, "lifetime": MAX_LIFETIME}).lifetime == MAX_LIFETIME
    with pytest.raises(PolicyError, match="lifetime"):
        parse_policy({**policy, "lifetime": MAX_LIFETIME + 1})
    assert timeout >= MAX_LIFETIME + 86400


def test_the_stack_is_created_in_moto_cloudformation(moto_endpoint):  # noqa: F811
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="gate-artifacts")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("handler.py", "def lambda_handler(event, context):\n    return {}\n")
    s3.put_object(Bucket="gate-artifacts", Key="gate-lambda.zip", Body=code.getvalue())

    template = transformed()
    # moto's CloudFormation (5.2) has no AWS::Lambda::Url, AWS::S3::BucketPolicy nor
    # AWS::SecretsManager::Secret (it skips the last two, and fails on an output naming the first),
    # nor does it apply a table's TimeToLiveSpecification (the transform test checks it),
    # so the URL and its output are left out here (the transform test checks them).
    del template["Resources"]["AnalyzerFunctionUrl"], template["Outputs"]["FunctionUrl"]
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(StackName="canary-gate", TemplateBody=json.dumps(template),
                                Parameters=[{"ParameterKey": "ProductionAsgName", "ParameterValue": "web-prod"}],
                                Capabilities=["CAPABILITY_IAM"])
    stack = cloudformation.describe_stacks(StackName="canary-gate")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    created = {r["LogicalResourceId"]: r["PhysicalResourceId"]
               for r in cloudformation.describe_stack_resources(StackName="canary-gate")["StackResources"]
               if r.get("LogicalResourceId")}
    assert {"AnalyzerFunction", "AnalyzerFunctionRole", "AnalyzerLogGroup", "EvaluationsTable", "IdempotencyTable",
            "ReportsBucket", "GateLoop", "GateLoopRole", "LoopLogGroup", "JenkinsPolicy"} <= set(created)

    # The resources exist in their services, named as the parameters say.
    function = boto3.client("lambda").get_function(FunctionName="canary-gate-analyzer")["Configuration"]
    assert function["Runtime"] == "python3.12" and function["Handler"] == "handler.lambda_handler"
    assert function["Environment"]["Variables"]["GATE_STORE_TABLE"] == "canary-gate-evaluations"
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.describe_table(TableName="canary-gate-evaluations")["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["release", "sk"]
    assert dynamodb.describe_table(TableName="canary-gate-idempotency")["Table"]["KeySchema"][0]["AttributeName"] == "id"
    s3.head_bucket(Bucket=created["ReportsBucket"])
    role = boto3.client("iam").get_role(RoleName=created["AnalyzerFunctionRole"])["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["lambda.amazonaws.com"]}
    machine = boto3.client("stepfunctions").describe_state_machine(stateMachineArn=created["GateLoop"])
    assert json.loads(machine["definition"])["StartAt"] == "CheckInput"

    # And the DynamoDB store works on the table the stack made.
    from gate.store.dynamodb import DynamoStore

    store = DynamoStore("canary-gate-evaluations")
    assert store.start_release("web-1", 100, {}) == 100

    outputs = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}
    assert {"FunctionName", "StateMachineArn", "JenkinsPolicyArn"} <= set(outputs)
    assert outputs["FunctionName"] == "canary-gate-analyzer"
    assert outputs["StateMachineArn"] == created["GateLoop"]


# -- JenkinsPolicy: what `gate promote` and `gate rollback` call is allowed, nothing more -----------

ACCOUNT = "123456789012"
STACK_PARAMETERS = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT,
                    "AsgNamePrefix": "canary-", "ProductionAsgName": "web-prod", "InstanceRolePath": "/app/",
                    "RolloutLoadBalancerName": "web"}


def jenkins_statements(parameters: dict = STACK_PARAMETERS) -> list[dict]:
    """JenkinsPolicy's statements whose resources are plain !Sub strings, resolved with `parameters`
    (the others name the stack's own function, loop and bucket)."""
    import re

    def resolve(value):
        if isinstance(value, dict) and "Fn::Sub" in value:
            return re.sub(r"\$\{([^}]+)\}", lambda m: parameters[m[1]], value["Fn::Sub"])
        raise KeyError(value)

    statements = []
    for s in load_template()["Resources"]["JenkinsPolicy"]["Properties"]["PolicyDocument"]["Statement"]:
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        try:
            resources = [r if r == "*" else resolve(r) for r in resources]
        except KeyError:
            continue
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        statements.append({**s, "Action": actions, "Resource": resources})
    return statements


def allowed(statements: list[dict], action: str, resource: str, context: dict | None = None) -> bool:
    """IAM's answer for one action on one resource (Allow statements only, StringEquals conditions)."""
    from fnmatch import fnmatchcase

    for s in statements:
        if s["Effect"] != "Allow" or not any(fnmatchcase(action, a) for a in s["Action"]):
            continue
        if not any(fnmatchcase(resource, r) for r in s["Resource"]):
            continue
        conditions = s.get("Condition", {}).get("StringEquals", {})
        if all((context or {}).get(k) == v for k, v in conditions.items()):
            return True
    return False


def group_arn(name: str) -> str:
    return f"arn:aws:autoscaling:us-east-1:{ACCOUNT}:autoScalingGroup:6d5af669-eb3b-4530-894b-e314a667f2e7:autoScalingGroupName/{name}"


# Instance refreshes are not implemented by moto (5.2).
MOTO_LACKS = {"DescribeInstanceRefreshes": {"InstanceRefreshes": []},
              "StartInstanceRefresh": {"InstanceRefreshId": "0ad3b1c2-refresh"}}


def recorded_actions(strategy: str) -> list[tuple[str, str, dict]]:
    """Runs `promote` (with `strategy`) then `rollback` against moto, recording every call as
    (IAM action, resource, context), with what AWS also authorizes for a launch template update."""
    from moto import mock_aws

    from gate import actions

    calls: list[tuple[str, str, dict]] = []
    writes = {"UpdateAutoScalingGroup", "StartInstanceRefresh", "TerminateInstanceInAutoScalingGroup"}

    def record(service: str):
        def hook(model, params, **kwargs):
            action = f"{service}:{model.name}"
            if service == "autoscaling" and model.name == "TerminateInstanceInAutoScalingGroup":
                group = ec2_groups[params["InstanceId"]]
                calls.append((action, group_arn(group), {}))
            elif service == "autoscaling" and model.name in writes:
                calls.append((action, group_arn(params["AutoScalingGroupName"]), {}))
                template = (params.get("LaunchTemplate") or {}).get("LaunchTemplateId")
                if template:  # authorized as a launch from the template, with its instance role
                    calls.append(("ec2:RunInstances", f"arn:aws:ec2:us-east-1:{ACCOUNT}:launch-template/{template}", {}))
                    calls.append(("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/app/web-instance",
                                  {"iam:PassedToService": "ec2.amazonaws.com"}))
            else:
                calls.append((action, "*", {}))
        return hook

    def answer(model, **kwargs):
        if model.name in MOTO_LACKS:  # answered here, as AWS would
            return SimpleNamespace(status_code=200, headers={}), MOTO_LACKS[model.name]
        return None

    with mock_aws():
        ec2, autoscaling = boto3.client("ec2"), boto3.client("autoscaling")
        template = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={
            "ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
        ec2.create_launch_template_version(LaunchTemplateId=template, LaunchTemplateData={
            "ImageId": "ami-12c6146b", "InstanceType": "t3.small"})
        for name, version, size in (("web-prod", "1", 2), ("canary-web-baseline", "1", 1), ("canary-web", "2", 1)):
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=size, MaxSize=size + 1, DesiredCapacity=size,
                LaunchTemplate={"LaunchTemplateId": template, "Version": version}, AvailabilityZones=["us-east-1a"])
        ec2_groups = {i["InstanceId"]: g["AutoScalingGroupName"]
                      for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"] for i in g["Instances"]}
        autoscaling.meta.events.register("before-parameter-build.auto-scaling", record("autoscaling"))
        autoscaling.meta.events.register("before-call.auto-scaling", answer)
        ec2.meta.events.register("before-parameter-build.ec2", record("ec2"))
        aws = actions.AutoScaling(autoscaling, ec2, sleep=lambda seconds: None)
        groups = actions.Groups(canary="canary-web", baseline="canary-web-baseline", production="web-prod")
        promoted = actions.promote("web-2", groups, aws, strategy=strategy)
        assert promoted.steps, "promote planned something"
        actions.rollback("web-2", groups, aws)
    return calls


@pytest.mark.parametrize("strategy", ["refresh", "swap"])
def test_the_jenkins_policy_allows_what_promote_and_rollback_call(strategy, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    calls = recorded_actions(strategy)
    statements = jenkins_statements()
    assert ("autoscaling:UpdateAutoScalingGroup", group_arn("web-prod"), {}) in calls  # production was promoted
    assert any(a == "ec2:RunInstances" for a, _, _ in calls)
    denied = [call for call in calls if not allowed(statements, *call)]
    assert denied == []


def test_the_jenkins_policy_writes_no_other_group_and_passes_roles_only_to_ec2():
    statements = jenkins_statements()
    for name in ("web-prod-2", "other-prod", "web-pro", "web-canary"):
        for action in ("autoscaling:UpdateAutoScalingGroup", "autoscaling:StartInstanceRefresh",
                       "autoscaling:TerminateInstanceInAutoScalingGroup"):
            assert not allowed(statements, action, group_arn(name)), (action, name)
    assert allowed(statements, "autoscaling:UpdateAutoScalingGroup", group_arn("canary-anything"))
    role = f"arn:aws:iam::{ACCOUNT}:role/app/web-instance"
    assert not allowed(statements, "iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert not allowed(statements, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin",
                       {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not allowed(statements, "ec2:RunInstances", f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/*")
    # The analyzer role still cannot touch a group (test_the_sam_transform_yields_the_stack_jenkins_needs).


# -- the loop, executed: moto's Step Functions interpreter runs the transformed definition ----------

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:canary-gate-analyzer"


def loop_definition(max_errors: int = 2) -> str:
    """The state machine as CloudFormation would create it: the template's definition with its
    substitutions applied."""
    machine = transformed()["Resources"]["GateLoop"]["Properties"]
    separator, lines = machine["DefinitionString"]["Fn::Join"]
    return separator.join(lines).replace("${AnalyzerArn}", FUNCTION_ARN).replace("${MaxErrors}", str(max_errors))


class Loop:
    """Runs the loop with the analyzer's answers given by `analyzer(event) -> answer` (an
    Exception: the function crashed) and the waits recorded instead of slept."""

    def __init__(self, monkeypatch, analyzer, on_wait=None):
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

        self.events: list[dict] = []
        self.waits: list[int] = []

        def invoke(parameters, region, state_credentials):
            assert parameters["FunctionName"] == FUNCTION_ARN
            payload = parameters.get("Payload")
            event = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
            self.events.append(event)
            answer = analyzer(event)
            if isinstance(answer, Exception):
                return {"StatusCode": 200, "FunctionError": "Unhandled",
                        "Payload": {"errorType": type(answer).__name__, "errorMessage": str(answer)}}
            return {"StatusCode": 200, "Payload": json.loads(json.dumps(answer))}

        def wait(function, env, wait_seconds):
            self.waits.append(wait_seconds)
            if on_wait:
                on_wait(wait_seconds)

        monkeypatch.setattr(lambda_eval_utils, "_invoke_lambda_function", invoke)
        monkeypatch.setattr(WaitFunction, "_wait_interval", wait)
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    def run(self, execution_input: dict, max_errors: int = 2, setup=None) -> dict:
        """`setup()`: runs first inside the mocked account (resources the analyzer uses)."""
        from moto import mock_aws

        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            if setup is not None:
                setup()
            role = boto3.client("iam").create_role(RoleName="loop", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            states = boto3.client("stepfunctions")
            machine = states.create_state_machine(name="canary-gate-analyzer-loop", roleArn=role,
                                                  definition=loop_definition(max_errors))["stateMachineArn"]
            execution = states.start_execution(stateMachineArn=machine, input=json.dumps(execution_input))["executionArn"]
            deadline = time_module.monotonic() + 60
            while True:
                described = states.describe_execution(executionArn=execution)
                if described["status"] != "RUNNING" or time_module.monotonic() > deadline:
                    break
                time_module.sleep(0.05)
        described["output"] = json.loads(described["output"]) if described.get("output") else None
        return described


EVENT = {"release": "web-1.2.3", "policy": "s3://gate-reports/policies/web.yaml", "canary": "version:1.2.3",
         "build_url": "https://jenkins.invalid/job/web/7/"}


def verdict(name: str, final: bool = False, interval: int = 60) -> dict:
    return {"release": "web-1.2.3", "verdict": name, "exit_code": {"pass": 0, "fail": 1, "inconclusive": 3}[name],
            "final": final, "reason": name, "metrics": [], "notes": [], "interval_seconds": interval}


def error(status: int) -> dict:
    return {"statusCode": status, "verdict": "error", "error": f"error {status}", "exit_code": 4, "release": "web-1.2.3"}


def scripted(answers: list):
    answers = list(answers)
    return lambda event: answers.pop(0)


def test_the_loop_waits_the_policy_interval_until_a_decision(monkeypatch):
    answers = [verdict("inconclusive", interval=120), verdict("inconclusive", interval=120), verdict("fail")]
    loop = Loop(monkeypatch, scripted(answers))
    described = loop.run(EVENT)
    assert described["status"] == "SUCCEEDED"
    assert described["output"] == {"verdict": "fail", "exit_code": 1, "answer": verdict("fail")}
    assert loop.events == [EVENT] * 3  # the bare event, as the step sends it, every time
    assert loop.waits == [120, 120]  # the interval of the answer


def test_a_final_inconclusive_ends_the_loop(monkeypatch):
    loop = Loop(monkeypatch, scripted([verdict("inconclusive"), verdict("inconclusive", final=True)]))
    described = loop.run(EVENT)
    assert described["output"]["verdict"] == "inconclusive" and described["output"]["exit_code"] == 3
    assert described["output"]["answer"]["final"] is True
    assert len(loop.events) == 2 and loop.waits == [60]


def test_transient_errors_are_retried_60_s_apart_up_to_max_errors(monkeypatch):
    loop = Loop(monkeypatch, scripted([error(503), error(409), verdict("inconclusive", interval=30), error(503),
                                       error(503), verdict("pass")]))
    described = loop.run(EVENT, max_errors=2)
    assert described["output"]["verdict"] == "pass" and described["output"]["exit_code"] == 0
    assert loop.waits == [60, 60, 30, 60, 60]  # a verdict resets the count of errors in a row

    loop = Loop(monkeypatch, scripted([error(503), error(503), error(503), verdict("pass")]))
    described = loop.run(EVENT, max_errors=2)
    assert described["status"] == "SUCCEEDED"
    assert described["output"] == {"verdict": "error", "exit_code": 4, "answer": error(503)}
    assert len(loop.events) == 3 and loop.waits == [60, 60]


def test_a_bad_request_ends_the_loop_at_once(monkeypatch):
    loop = Loop(monkeypatch, scripted([error(400), verdict("pass")]))
    described = loop.run(EVENT)
    assert described["output"] == {"verdict": "error", "exit_code": 4, "answer": error(400)}
    assert len(loop.events) == 1 and loop.waits == []


def test_a_crashed_function_is_could_not_judge(monkeypatch):
    loop = Loop(monkeypatch, scripted([MemoryError("Runtime exited with error: signal: killed")]))
    described = loop.run(EVENT)
    assert described["status"] == "SUCCEEDED"
    output = described["output"]
    assert (output["verdict"], output["exit_code"]) == ("error", 4)
    answer = output["answer"]
    assert (answer["verdict"], answer["exit_code"], answer["statusCode"], answer["release"]) == ("error", 4, 500, "web-1.2.3")
    assert answer["error"].startswith("the analyzer failed - MemoryError: ") and "signal: killed" in answer["error"]


def test_an_input_with_now_is_refused(monkeypatch):
    loop = Loop(monkeypatch, scripted([verdict("pass")]))
    described = loop.run({**EVENT, "now": "2024-05-01T10:30:00Z"})
    assert described["status"] == "FAILED"
    assert described["error"] == "CanaryGate.NowNotAllowed"
    assert "without \"now\"" in described["cause"]
    assert loop.events == []


def test_an_undecided_answer_without_an_interval_waits_60_s_and_goes_on(monkeypatch):
    """Answers cached by the idempotency table before `interval_seconds` existed: undecided, not
    final, no interval. The loop waits a minute and asks again, never ends them as decided."""
    legacy = {k: v for k, v in verdict("inconclusive").items() if k != "interval_seconds"}
    loop = Loop(monkeypatch, scripted([legacy, legacy, verdict("inconclusive", interval=120), verdict("pass")]))
    described = loop.run(EVENT)
    assert described["status"] == "SUCCEEDED"
    assert described["output"] == {"verdict": "pass", "exit_code": 0, "answer": verdict("pass")}
    assert loop.waits == [60, 60, 120] and len(loop.events) == 4
    # A final one without an interval still ends the loop (the lifetime is over).
    final = {k: v for k, v in verdict("inconclusive", final=True).items() if k != "interval_seconds"}
    loop = Loop(monkeypatch, scripted([legacy, final]))
    described = loop.run(EVENT)
    assert described["output"]["exit_code"] == 3 and loop.waits == [60]


def test_an_http_shaped_input_is_refused(monkeypatch):
    """The loop calls the analyzer directly: a Function URL request (the event in "body") would be
    judged as an event without a release. It fails at once, naming why."""
    loop = Loop(monkeypatch, scripted([verdict("pass")]))
    described = loop.run({"body": json.dumps(EVENT), "requestContext": {"http": {"method": "POST"}},
                          "isBase64Encoded": False})
    assert described["status"] == "FAILED"
    assert described["error"] == "CanaryGate.HttpEventNotAllowed"
    assert "invokes the analyzer directly" in described["cause"] and '"body"' in described["cause"]
    assert loop.events == []


PLANNED = {"release": "web-1.2.3", "verdict": "ok", "exit_code": 0, "metrics": [], "canary_share": 0.05}


@pytest.mark.parametrize("action", ["plan", "backtest", "promote", 3])
def test_an_input_with_an_action_other_than_evaluate_is_refused(monkeypatch, action):
    """Issue 22.9: `"action": "plan"` was invoked, answered `ok` with exit_code 0, and the loop ended
    SUCCEEDED with exit_code 0, which infra/README calls a pass."""
    loop = Loop(monkeypatch, scripted([PLANNED]))
    described = loop.run({**EVENT, "action": action})
    assert described["status"] == "FAILED", described
    assert described["error"] == "CanaryGate.ActionNotAllowed"
    assert 'without "action"' in described["cause"] and "gate plan" in described["cause"]
    assert loop.events == []


def test_an_explicit_evaluate_action_runs_the_loop(monkeypatch):
    loop = Loop(monkeypatch, scripted([verdict("fail")]))
    described = loop.run({**EVENT, "action": "evaluate"})
    assert described["output"] == {"verdict": "fail", "exit_code": 1, "answer": verdict("fail")}


def test_an_input_with_rollout_step_is_refused(monkeypatch):
    """Issue 22: `rollout_step` in the input made every Evaluate a step change: 150 invocations,
    nothing judged, on to the 8-day hard stop."""
    loop = Loop(monkeypatch, scripted([verdict("inconclusive")] * 3))
    described = loop.run({**EVENT, "rollout": True, "rollout_step": 2})
    assert described["status"] == "FAILED", described
    assert described["error"] == "CanaryGate.RolloutStepNotAllowed"
    assert 'without "rollout_step"' in described["cause"]
    assert loop.events == []


def test_an_answer_that_is_no_verdict_ends_the_loop_as_could_not_judge_not_with_its_exit_code(monkeypatch):
    """Whatever reaches the analyzer, an answer that is no verdict of a check (a plan's `ok`,
    exit_code 0) never ends the loop with exit_code 0."""
    loop = Loop(monkeypatch, scripted([PLANNED]))
    described = loop.run(EVENT)
    assert described["status"] == "SUCCEEDED"
    output = described["output"]
    assert (output["verdict"], output["exit_code"]) == ("error", 4), output
    assert output["answer"]["answered"] == PLANNED and "no verdict of a check" in output["answer"]["error"]


def test_the_loop_with_the_real_analyzer_on_a_replayed_canary(monkeypatch, tmp_path, corpus):
    """End to end: the loop's input is the analyzer's event; the real handler judges the current
    moment (a clock the loop's waits move on), answers its interval; the loop decides as it says."""
    from types import SimpleNamespace

    from gate.verdict import iso, parse_time
    from tests.lambda_module import FakeContext, import_handler
    from tests.test_lambda_handler import case_event

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("GATE_STORE", str(tmp_path / "gate.sqlite"))
    for key in ("GATE_STORE_TABLE", "GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID", "GATE_REPORT_BUCKET",
                "SLACK_WEBHOOK_URL", "DD_API_KEY", "DD_APP_KEY"):
        monkeypatch.delenv(key, raising=False)
    handler = import_handler("gate_lambda_handler_loop", replays=True)
    try:
        event = case_event(corpus, "k1m-canary-down-012")
        event.pop("now")
        clock = [parse_time(event["deployed_at"]) + 90]
        monkeypatch.setattr(handler, "time", SimpleNamespace(time=lambda: clock[0], perf_counter=time_module.perf_counter))
        answers = []

        def analyzer(payload):
            answers.append(handler.lambda_handler(payload, FakeContext()))
            return answers[-1]

        def advance(seconds):
            clock[0] += seconds

        loop = Loop(monkeypatch, analyzer, on_wait=advance)
        described = loop.run(event)
    finally:
        sys.modules.pop("gate_lambda_handler_loop", None)
    assert described["status"] == "SUCCEEDED", described
    print(f"\nthe loop with the real analyzer: {[a['verdict'] for a in answers]}")
    assert [a["verdict"] for a in answers][-1] == "fail" and len(answers) >= 2
    assert all(a["verdict"] == "inconclusive" for a in answers[:-1])
    assert described["output"] == {"verdict": "fail", "exit_code": 1, "answer": answers[-1]}
    assert all(e == event for e in loop.events)
    assert all(a["same_deploy"] == {"deployed_at": iso(parse_time(event["deployed_at"]))} for a in answers)
    assert loop.waits == [60] * (len(answers) - 1)  # the policy's interval, from the answers
    start = (parse_time(event["deployed_at"]) + 90) // 60 * 60
    assert [a["evaluated_at"] for a in answers] == [iso(start + 60 * i) for i in range(len(answers))]


def test_a_loop_started_without_deployed_at_asks_about_its_first_answers_deploy_from_then_on(monkeypatch):
    """Review of issue 22: a loop whose input had no deployed_at was answered, look after look,
    for whatever deploy of the release was registered at that moment: a redeploy during the
    loop was judged by the old loop too. The first answer's deploy is pinned for every later look."""
    first = {**verdict("inconclusive"), "same_deploy": {"deployed_at": "2024-05-01T10:00:00Z"}}
    second = {**verdict("inconclusive"), "same_deploy": {"deployed_at": "2024-05-01T10:00:00Z"}}
    loop = Loop(monkeypatch, scripted([first, second, verdict("pass")]))
    described = loop.run(EVENT)
    assert described["status"] == "SUCCEEDED", described
    assert "deployed_at" not in loop.events[0]
    assert [e.get("deployed_at") for e in loop.events[1:]] == ["2024-05-01T10:00:00Z"] * 2
    assert all({k: v for k, v in e.items() if k != "deployed_at"} == EVENT for e in loop.events)


def test_a_loop_whose_first_look_failed_pins_the_deploy_the_error_names(monkeypatch):
    first = {**error(503), "same_deploy": {"deployed_at": "2024-05-01T10:00:00Z"}}
    loop = Loop(monkeypatch, scripted([first, verdict("pass")]))
    assert loop.run(EVENT)["status"] == "SUCCEEDED"
    assert [e.get("deployed_at") for e in loop.events] == [None, "2024-05-01T10:00:00Z"]


def test_a_loop_started_with_a_null_deployed_at_pins_its_first_answers_deploy_too(monkeypatch):
    """Review: a present null counted as given, and was never pinned."""
    first = {**verdict("inconclusive"), "same_deploy": {"deployed_at": "2024-05-01T10:00:00Z"}}
    loop = Loop(monkeypatch, scripted([first, verdict("pass")]))
    assert loop.run({**EVENT, "deployed_at": None})["status"] == "SUCCEEDED"
    assert [e["deployed_at"] for e in loop.events] == [None, "2024-05-01T10:00:00Z"]


def test_a_loop_started_with_deployed_at_keeps_its_own(monkeypatch):
    event = {**EVENT, "deployed_at": "2024-05-01T09:00:00Z"}
    answer = {**verdict("inconclusive"), "same_deploy": {"deployed_at": "2024-05-01T10:00:00Z"}}
    loop = Loop(monkeypatch, scripted([answer, verdict("pass")]))
    assert loop.run(event)["status"] == "SUCCEEDED"
    assert all(e == event for e in loop.events)
