"""An Application Load Balancer on moto whose listener forwards to target groups by weight: the
set-up `gate rollout` expects (docs/cloudwatch.md), for the tests and bench/rollout_steps.py."""

from __future__ import annotations

from typing import Any


def weighted_listener(ec2: Any, elbv2: Any, **weights: int) -> tuple[str, dict[str, str]]:
    """A load balancer in a new VPC whose listener's one forward action sends each named target
    group (`web-NAME`) its weight; returns the listener's ARN and the groups' ARNs by name."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{zone}")
               ["Subnet"]["SubnetId"] for i, zone in ((1, "a"), (2, "b"))]
    balancer = elbv2.create_load_balancer(Name="web", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    groups = {name: elbv2.create_target_group(Name=f"web-{name}", Protocol="HTTP", Port=80, VpcId=vpc)
              ["TargetGroups"][0]["TargetGroupArn"] for name in weights}
    listener = elbv2.create_listener(LoadBalancerArn=balancer, Protocol="HTTP", Port=80, DefaultActions=[
        forward(groups, **weights)])["Listeners"][0]["ListenerArn"]
    return listener, groups


def forward(groups: dict, **weights: int) -> dict:
    return {"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": groups[name], "Weight": weight} for name, weight in weights.items()]}}


def with_instances(ec2: Any, elbv2: Any, groups: dict[str, str]) -> dict[str, str]:
    """One running instance registered in each target group (moto reports a running one healthy
    and a stopped one `unused`, Target.InvalidState, as an ALB does); their ids by group name."""
    vpc = elbv2.describe_target_groups(TargetGroupArns=[next(iter(groups.values()))])["TargetGroups"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    ids = {}
    for name, arn in groups.items():
        ids[name] = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                      SubnetId=subnet)["Instances"][0]["InstanceId"]
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": ids[name], "Port": 80}])
    return ids
