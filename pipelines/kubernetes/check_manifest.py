#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Checks the affect Indexed Job manifest offline, and prints what each index would run.

Usage: check_manifest.py [options] JOB.yaml

The checks are those the API server applies to a batch/v1 Job that matter here (completion
mode, completions and parallelism, restart policy, every podFailurePolicy rule, container and
volume names, resource requests against limits), and those of this project: one container
runs `affect analyze` with `--shard <index>/<N>`, N equal to completions, the index taken from
$(JOB_COMPLETION_INDEX), and its output folder on a mounted volume; exit status 75 (stopped
by SIGTERM, to be retried) is ignored by the failure policy, exit status 1 (an input failed)
is not. When the kubernetes-validate package is installed the manifest is also validated
against the Kubernetes JSON schema of --kubernetes-version, strictly (unknown fields fail).

On success prints one JSON object on stdout:
  {"completions": N, "commands": [[argv of index 0...], [argv of index 1...], ...]}
with $(VAR) references expanded as the kubelet does (JOB_COMPLETION_INDEX = the index).
On a problem prints each one on stderr and exits 1 (2 for bad usage or an unreadable file).

Options:
  --kubernetes-version V  schema version for kubernetes-validate (default 1.33.0)
  --no-schema             skip the schema validation
  --program PATH          put PATH in place of the program (argv[0]) of the commands
  --map MOUNT=DIR         rewrite arguments under MOUNT (e.g. /data) to DIR; repeatable
"""

import argparse
import json
import re
import sys

import yaml

DEFAULT_SCHEMA_VERSION = "1.33.0"
INDEX_VAR = "JOB_COMPLETION_INDEX"
INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
ACTIONS = {"FailJob", "FailIndex", "Ignore", "Count"}
OPERATORS = {"In", "NotIn"}
CONDITION_STATUSES = {"True", "False", "Unknown"}
EXIT_TEMPFAIL = 75
EXIT_INPUT_FAILED = 1
MIN_GRACE_SECONDS = 10

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
SHARD_INDEX_FORMS = ("$(JOB_COMPLETION_INDEX)", "$JOB_COMPLETION_INDEX", "${JOB_COMPLETION_INDEX}")
SHELLS = {"sh", "bash", "dash", "ash"}


class Problems:
    def __init__(self):
        self.items = []

    def add(self, path, message):
        self.items.append(f"{path}: {message}")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def nonneg_int(problems, obj, key, path):
    if key in obj and obj[key] is not None:
        if not is_int(obj[key]) or obj[key] < 0:
            problems.add(f"{path}.{key}", f"must be a non-negative integer, not {obj[key]!r}")
            return None
        return obj[key]
    return None


def as_dict(problems, value, path, required=True):
    if value is None:
        if required:
            problems.add(path, "is required")
        return {}
    if not isinstance(value, dict):
        problems.add(path, f"must be a mapping, not {type(value).__name__}")
        return {}
    return value


def as_list(problems, value, path, required=False):
    if value is None:
        if required:
            problems.add(path, "is required")
        return []
    if not isinstance(value, list):
        problems.add(path, f"must be a list, not {type(value).__name__}")
        return []
    return value


# Quantities (resource.Quantity): a decimal number with an optional suffix.
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
SUFFIX = {
    None: 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "P": 1e15, "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
    "Ei": 2**60,
}


def quantity(value):
    """The value of a Kubernetes quantity, or None when it is not one."""
    if is_int(value) or isinstance(value, float):
        return float(value)
    if not isinstance(value, str):
        return None
    m = QUANTITY.match(value.strip())
    if not m:
        return None
    try:
        number = float(m.group(1) + (m.group(2) or ""))
    except ValueError:
        return None
    return number * SUFFIX[m.group(3)]


def expand(text, env):
    """$(VAR) expansion as the kubelet does it for command, args and env values: $$ is a
    literal $, $(VAR) of a known VAR its value, anything else is left as written."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "$" and i + 1 < len(text):
            n = text[i + 1]
            if n == "$":
                out.append("$")
                i += 2
                continue
            if n == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def references(text):
    """The names of the $(VAR) references in text ($$( escapes one)."""
    return [m.group(1) for m in re.finditer(r"(?<!\$)\$\(([^)]*)\)", text)]


def check_resources(problems, resources, path):
    resources = as_dict(problems, resources, path, required=False)
    requests = as_dict(problems, resources.get("requests"), f"{path}.requests", required=False)
    limits = as_dict(problems, resources.get("limits"), f"{path}.limits", required=False)
    for kind, table in (("requests", requests), ("limits", limits)):
        for name, value in table.items():
            q = quantity(value)
            if q is None or q < 0:
                problems.add(f"{path}.{kind}.{name}", f"{value!r} is not a valid quantity")
            elif "/" in name and not name.startswith("kubernetes.io/") and q != int(q):
                problems.add(f"{path}.{kind}.{name}", "an extended resource must be a whole number")
    for name, value in requests.items():
        if name in limits:
            r, l = quantity(value), quantity(limits[name])
            if r is not None and l is not None and r > l:
                problems.add(f"{path}.requests.{name}", f"{value} is more than the limit {limits[name]}")
        elif "/" in name and not name.startswith("kubernetes.io/"):
            problems.add(f"{path}.limits.{name}", "an extended resource requested must have a limit")
    for name in requests.keys() & limits.keys():
        if "/" in name and not name.startswith("kubernetes.io/"):
            if quantity(requests[name]) != quantity(limits[name]):
                problems.add(f"{path}.requests.{name}", "an extended resource's request must equal its limit")
    return {**requests, **limits}


def shard_argument(argv):
    """(position, value) of the --shard argument in argv, or in a shell script argument."""
    for i, a in enumerate(argv):
        if a == "--shard" and i + 1 < len(argv):
            return i + 1, argv[i + 1]
        if a.startswith("--shard="):
            return i, a[len("--shard="):]
    for i, a in enumerate(argv):
        m = re.search(r"--shard(?:=|\s+)(['\"]?)(\S+?)\1(?:\s|;|$)", a)
        if m:
            return i, m.group(2)
    return None, None


def option_value(argv, *names):
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if n.startswith("--") and a.startswith(n + "="):
                return a[len(n) + 1:]
    for a in argv:
        for n in names:
            m = re.search(re.escape(n) + r"(?:=|\s+)(['\"]?)(\S+?)\1(?:\s|;|$)", a)
            if m:
                return m.group(2)
    return None


def under(path, mount):
    mount = mount.rstrip("/") or "/"
    return path == mount or path.startswith(mount if mount.endswith("/") else mount + "/")


def check(doc, problems):
    """Checks the Job; returns (completions, argv template, env table, container) or None."""
    if doc.get("apiVersion") != "batch/v1":
        problems.add("apiVersion", f"must be batch/v1, not {doc.get('apiVersion')!r}")
    if doc.get("kind") != "Job":
        problems.add("kind", f"must be Job, not {doc.get('kind')!r}")
    meta = as_dict(problems, doc.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not DNS_SUBDOMAIN.match(name) or len(name) > 253:
        problems.add("metadata.name", f"{name!r} is not a valid name (lower-case DNS subdomain)")
        name = None

    spec = as_dict(problems, doc.get("spec"), "spec")
    if spec.get("completionMode") != "Indexed":
        problems.add("spec.completionMode", f"must be Indexed, not {spec.get('completionMode')!r}")
    completions = spec.get("completions")
    if not is_int(completions) or completions < 1:
        problems.add("spec.completions", f"must be a positive integer (the number of shards), not {completions!r}")
        completions = None
    elif completions > 100_000:
        problems.add("spec.completions", "an Indexed Job has at most 100000 completions here")
    parallelism = spec.get("parallelism", 1)
    if not is_int(parallelism) or parallelism < 1:
        problems.add("spec.parallelism", f"must be a positive integer, not {parallelism!r}")
    elif completions is not None and parallelism > completions:
        problems.add("spec.parallelism", f"{parallelism} is more than completions ({completions})")
    if name and completions:
        hostname = f"{name}-{completions - 1}"
        if not DNS_LABEL.match(hostname) or len(hostname) > 63:
            problems.add("metadata.name", f"pod hostname {hostname!r} would not be a valid DNS label")
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        nonneg_int(problems, spec, key, "spec")
    per_index = nonneg_int(problems, spec, "backoffLimitPerIndex", "spec")
    max_failed = nonneg_int(problems, spec, "maxFailedIndexes", "spec")
    if max_failed is not None:
        if "backoffLimitPerIndex" not in spec:
            problems.add("spec.maxFailedIndexes", "needs spec.backoffLimitPerIndex")
        if completions is not None and max_failed > completions:
            problems.add("spec.maxFailedIndexes", f"{max_failed} is more than completions ({completions})")

    template = as_dict(problems, spec.get("template"), "spec.template")
    pod = as_dict(problems, template.get("spec"), "spec.template.spec")
    restart = pod.get("restartPolicy")
    policy = spec.get("podFailurePolicy")
    if restart not in ("Never", "OnFailure"):
        problems.add("spec.template.spec.restartPolicy", f"must be Never or OnFailure for a Job, not {restart!r}")
    elif policy is not None and restart != "Never":
        problems.add("spec.template.spec.restartPolicy", "must be Never with a podFailurePolicy")
    if per_index is not None and restart != "Never":
        problems.add("spec.template.spec.restartPolicy", "must be Never with backoffLimitPerIndex")
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        allowed = {"Failed"} if policy is not None else {"Failed", "TerminatingOrFailed"}
        if replacement not in allowed:
            problems.add("spec.podReplacementPolicy", f"{replacement!r} is not one of {sorted(allowed)}")
    grace = nonneg_int(problems, pod, "terminationGracePeriodSeconds", "spec.template.spec")
    if grace is not None and grace < MIN_GRACE_SECONDS:
        problems.add("spec.template.spec.terminationGracePeriodSeconds",
                     f"{grace} s leaves affect no time to stop cleanly (at least {MIN_GRACE_SECONDS})")

    # Volumes and containers.
    volumes = {}
    for i, v in enumerate(as_list(problems, pod.get("volumes"), "spec.template.spec.volumes")):
        p = f"spec.template.spec.volumes[{i}]"
        v = as_dict(problems, v, p)
        vname = v.get("name")
        if not isinstance(vname, str) or not DNS_LABEL.match(vname):
            problems.add(f"{p}.name", f"{vname!r} is not a valid volume name")
            continue
        if vname in volumes:
            problems.add(f"{p}.name", f"duplicate volume {vname!r}")
        sources = [k for k in v if k != "name"]
        if len(sources) != 1:
            problems.add(p, f"must have exactly one volume source, has {sources}")
        if "persistentVolumeClaim" in v:
            claim = as_dict(problems, v["persistentVolumeClaim"], f"{p}.persistentVolumeClaim")
            if not isinstance(claim.get("claimName"), str) or not claim.get("claimName"):
                problems.add(f"{p}.persistentVolumeClaim.claimName", "is required")
        volumes[vname] = v

    containers = as_list(problems, pod.get("containers"), "spec.template.spec.containers", required=True)
    init_containers = as_list(problems, pod.get("initContainers"), "spec.template.spec.initContainers")
    if not containers:
        problems.add("spec.template.spec.containers", "must have at least one container")
    names = set()
    all_containers = [("containers", c) for c in containers] + [("initContainers", c) for c in init_containers]
    for i, (kind, c) in enumerate(all_containers):
        c = as_dict(problems, c, f"spec.template.spec.{kind}[{i}]")
        cname = c.get("name")
        if not isinstance(cname, str) or not DNS_LABEL.match(cname):
            problems.add(f"spec.template.spec.{kind}[{i}].name", f"{cname!r} is not a valid container name")
        elif cname in names:
            problems.add(f"spec.template.spec.{kind}[{i}].name", f"duplicate container {cname!r}")
        names.add(cname)

    # The pod failure policy.
    if policy is None:
        problems.add("spec.podFailurePolicy", "is required: exit status 75 (SIGTERM) must not count as a failure")
        rules = []
    else:
        rules = as_list(problems, as_dict(problems, policy, "spec.podFailurePolicy").get("rules"),
                        "spec.podFailurePolicy.rules", required=True)
    if len(rules) > 20:
        problems.add("spec.podFailurePolicy.rules", f"at most 20 rules, has {len(rules)}")
    exit_rules = []
    for i, rule in enumerate(rules):
        p = f"spec.podFailurePolicy.rules[{i}]"
        rule = as_dict(problems, rule, p)
        action = rule.get("action")
        if action not in ACTIONS:
            problems.add(f"{p}.action", f"{action!r} is not one of {sorted(ACTIONS)}")
        elif action == "FailIndex" and per_index is None:
            problems.add(f"{p}.action", "FailIndex needs spec.backoffLimitPerIndex")
        on_codes = rule.get("onExitCodes")
        on_conditions = rule.get("onPodConditions")
        if (on_codes is None) == (not on_conditions):
            problems.add(p, "must have exactly one of onExitCodes and onPodConditions")
        if on_codes is not None:
            q = f"{p}.onExitCodes"
            on_codes = as_dict(problems, on_codes, q)
            op = on_codes.get("operator")
            if op not in OPERATORS:
                problems.add(f"{q}.operator", f"{op!r} is not one of {sorted(OPERATORS)}")
            cname = on_codes.get("containerName")
            if cname is not None and cname not in names:
                problems.add(f"{q}.containerName", f"{cname!r} is none of the containers {sorted(n for n in names if n)}")
            values = as_list(problems, on_codes.get("values"), f"{q}.values", required=True)
            if not values:
                problems.add(f"{q}.values", "needs at least one exit status")
            if len(values) > 255:
                problems.add(f"{q}.values", f"at most 255 values, has {len(values)}")
            ok = True
            for j, v in enumerate(values):
                if not is_int(v) or not 0 <= v <= 255:
                    problems.add(f"{q}.values[{j}]", f"{v!r} is not an exit status (0-255)")
                    ok = False
                elif op == "In" and v == 0:
                    problems.add(f"{q}.values[{j}]", "must not be 0 with the In operator")
            if ok:
                if len(set(values)) != len(values):
                    problems.add(f"{q}.values", "has duplicates")
                if values != sorted(values):
                    problems.add(f"{q}.values", "must be in ascending order")
                exit_rules.append((action, op, cname, set(values)))
        for j, pattern in enumerate(as_list(problems, on_conditions, f"{p}.onPodConditions")):
            q = f"{p}.onPodConditions[{j}]"
            pattern = as_dict(problems, pattern, q)
            ctype = pattern.get("type")
            if not isinstance(ctype, str) or not QUALIFIED_NAME.match(ctype):
                problems.add(f"{q}.type", f"{ctype!r} is not a valid condition type")
            status = pattern.get("status", "True")
            if status not in CONDITION_STATUSES:
                problems.add(f"{q}.status", f"{status!r} is not one of {sorted(CONDITION_STATUSES)}")
        if on_conditions is not None and len(on_conditions) > 20:
            problems.add(f"{p}.onPodConditions", "at most 20 patterns")

    # The container that runs affect analyze.
    runners = []
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            continue
        argv = as_list(problems, c.get("command"), f"spec.template.spec.containers[{i}].command") + \
            as_list(problems, c.get("args"), f"spec.template.spec.containers[{i}].args")
        if any(not isinstance(a, str) for a in argv):
            problems.add(f"spec.template.spec.containers[{i}]", "command and args must be strings (quote numbers)")
            continue
        if any("analyze" in a for a in argv) and any("--shard" in a for a in argv):
            runners.append((i, c, argv))
    if len(runners) != 1:
        problems.add("spec.template.spec.containers",
                     f"exactly one container must run `affect analyze ... --shard`, found {len(runners)}")
        return None
    i, c, argv = runners[0]
    p = f"spec.template.spec.containers[{i}]"
    cname = c.get("name")
    if not c.get("image"):
        problems.add(f"{p}.image", "is required")
    if not c.get("command"):
        problems.add(f"{p}.command", "must be set (the image's entrypoint is not known here)")

    # Its environment: literal values (expanded in order), the completion index, and
    # variables whose value is only known in the pod.
    env = {}
    runtime = set()
    for j, e in enumerate(as_list(problems, c.get("env"), f"{p}.env")):
        q = f"{p}.env[{j}]"
        e = as_dict(problems, e, q)
        ename = e.get("name")
        if not isinstance(ename, str) or not ename:
            problems.add(f"{q}.name", "is required")
            continue
        if "value" in e and "valueFrom" in e:
            problems.add(q, "must not have both value and valueFrom")
        if ename == INDEX_VAR:
            ref = as_dict(problems, e.get("valueFrom"), f"{q}.valueFrom").get("fieldRef") or {}
            if ref.get("fieldPath") != INDEX_ANNOTATION:
                problems.add(q, f"{INDEX_VAR} must come from fieldRef {INDEX_ANNOTATION}")
            continue
        if "valueFrom" in e:
            runtime.add(ename)
            env.pop(ename, None)
        else:
            value = e.get("value", "")
            env[ename] = expand(str(value), env)
            runtime.discard(ename)
    for a in argv:
        for ref in references(a):
            if ref in runtime:
                problems.add(f"{p}.args", f"$({ref}) is only known inside the pod")
            elif ref not in env and ref != INDEX_VAR:
                problems.add(f"{p}.args", f"$({ref}) names no variable of the container: it would stay as written")

    # --shard K/N with K the completion index and N the completions.
    _, shard = shard_argument(argv)
    m = re.match(r"^(.+)/(\d+)$", shard or "")
    if not m:
        problems.add(f"{p}.args", f"--shard {shard!r} is not INDEX/N")
    else:
        if m.group(1) not in SHARD_INDEX_FORMS:
            problems.add(f"{p}.args", f"--shard {shard!r}: the index must be $({INDEX_VAR})")
        if completions is not None and int(m.group(2)) != completions:
            problems.add(f"{p}.args", f"--shard {shard!r}: N is {m.group(2)} but completions is {completions}")

    # Input and output on mounted volumes.
    mounts = []
    for j, vm in enumerate(as_list(problems, c.get("volumeMounts"), f"{p}.volumeMounts")):
        q = f"{p}.volumeMounts[{j}]"
        vm = as_dict(problems, vm, q)
        vname, mpath = vm.get("name"), vm.get("mountPath")
        if vname not in volumes:
            problems.add(f"{q}.name", f"{vname!r} is none of the volumes {sorted(volumes)}")
        if not isinstance(mpath, str) or not mpath.startswith("/"):
            problems.add(f"{q}.mountPath", f"{mpath!r} must be an absolute path")
            continue
        if any(mpath.rstrip("/") == m.rstrip("/") for m, _, _ in mounts):
            problems.add(f"{q}.mountPath", f"{mpath} is mounted twice")
        mounts.append((mpath, vname, bool(vm.get("readOnly"))))
    manifest = option_value(argv, "--manifest")
    out = option_value(argv, "-o", "--out")
    if not manifest:
        problems.add(f"{p}.args", "--manifest is missing")
    if not out:
        problems.add(f"{p}.args", "-o OUT_DIR is missing")
    for what, path, writable in (("--manifest", manifest, False), ("-o", out, True)):
        if not path or "$" in path:
            continue
        holders = [m for m in mounts if under(path, m[0])]
        if not holders:
            problems.add(f"{p}.args", f"{what} {path} is on no mounted volume: it would be lost with the pod")
            continue
        mpath, vname, read_only = max(holders, key=lambda m: len(m[0]))
        if writable and read_only:
            problems.add(f"{p}.volumeMounts", f"{mpath} holds the output folder but is read-only")
        if writable and "persistentVolumeClaim" not in volumes.get(vname, {}):
            problems.add(f"{p}.args", f"-o {path} is on volume {vname!r}, which is no PersistentVolumeClaim")

    # Exit statuses: the first rule that matches decides.
    def first_action(code):
        for action, op, rule_container, values in exit_rules:
            if rule_container is not None and rule_container != cname:
                continue
            if (code in values) == (op == "In"):
                return action
        return "Count"

    if first_action(EXIT_TEMPFAIL) != "Ignore":
        problems.add("spec.podFailurePolicy", f"exit status {EXIT_TEMPFAIL} (stopped by SIGTERM) must be "
                     f"Ignore (retried, not counted), not {first_action(EXIT_TEMPFAIL)}")
    if first_action(EXIT_INPUT_FAILED) == "Ignore":
        problems.add("spec.podFailurePolicy", f"exit status {EXIT_INPUT_FAILED} (an input failed) must not be "
                     "Ignore: the index would be retried for ever")

    # Resources, and the provider against the GPUs asked for.
    res = check_resources(problems, c.get("resources"), f"{p}.resources")
    provider = option_value(argv, "--provider") or "cpu"
    gpus = quantity(res.get("nvidia.com/gpu", 0)) or 0
    if provider == "cuda" and gpus < 1:
        problems.add(f"{p}.resources", "--provider cuda without an nvidia.com/gpu limit")
    if provider != "cuda" and gpus >= 1:
        problems.add(f"{p}.args", "a GPU is asked for but --provider is not cuda")
    return completions, argv, env


def os_name(program):
    return program.rsplit("/", 1)[-1]


def commands(completions, argv, env, program, maps):
    result = []
    for k in range(completions):
        table = dict(env)
        table[INDEX_VAR] = str(k)
        cmd = [expand(a, table) for a in argv]
        if os_name(cmd[0]) in SHELLS and "-c" in cmd:
            # A shell script reads the index from its environment: write it in.
            cmd = [re.sub(r"\$\{?JOB_COMPLETION_INDEX\}?", str(k), a) for a in cmd]
        if program:
            if os_name(cmd[0]) in SHELLS and "-c" in cmd:
                i = cmd.index("-c") + 1
                if i < len(cmd):
                    cmd[i] = re.sub(r"(?<![\w/.-])affect(?=\s)", lambda _: program, cmd[i], count=1)
            else:
                cmd[0] = program
        for mount, local in maps:
            mount = mount.rstrip("/")
            cmd = [re.sub(r"(^|(?<=[\s=:'\"]))" + re.escape(mount) + r"(?=/|$|[\s'\";])", local.rstrip("/"), a)
                   for a in cmd]
        result.append(cmd)
    return result


def schema_validate(doc, version, problems):
    try:
        import kubernetes_validate
    except ImportError:
        print("check_manifest: kubernetes-validate is not installed: schema validation skipped",
              file=sys.stderr)
        return
    from kubernetes_validate import utils

    known = utils.all_versions()
    if utils.major_minor(version) not in {utils.major_minor(v) for v in known}:
        problems.add("(schema)", f"no schema for Kubernetes {version} (kubernetes-validate has "
                     f"{utils.major_minor(known[0])} to {utils.major_minor(known[-1])})")
        return
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except utils.ValidationError as e:
        where = ".".join(str(x) for x in e.path) or "(document)"
        problems.add(where, f"schema {version}: {e.message}")
    except utils.SchemaNotFoundError as e:
        problems.add("(schema)", e.message)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("--kubernetes-version", default=DEFAULT_SCHEMA_VERSION)
    parser.add_argument("--no-schema", action="store_true")
    parser.add_argument("--program")
    parser.add_argument("--map", action="append", default=[], metavar="MOUNT=DIR")
    args = parser.parse_args()
    maps = []
    for m in args.map:
        mount, sep, local = m.partition("=")
        if not sep or not mount.startswith("/") or not local:
            parser.error(f"--map {m!r}: write MOUNT=DIR, MOUNT absolute")
        maps.append((mount, local))
    try:
        with open(args.manifest, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except OSError as e:
        print(f"check_manifest: {e}", file=sys.stderr)
        return 2
    except yaml.YAMLError as e:
        print(f"check_manifest: {args.manifest}: not valid YAML: {e}", file=sys.stderr)
        return 1
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Job"]
    if len(jobs) != 1:
        print(f"check_manifest: {args.manifest}: expected one Job, found {len(jobs)}", file=sys.stderr)
        return 1
    problems = Problems()
    if not args.no_schema:
        schema_validate(jobs[0], args.kubernetes_version, problems)
    checked = check(jobs[0], problems)
    if problems.items or checked is None:
        for item in problems.items:
            print(f"check_manifest: {args.manifest}: {item}", file=sys.stderr)
        return 1
    completions, argv, env = checked
    json.dump({"completions": completions,
               "commands": commands(completions, argv, env, args.program, maps)}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
