// canaryGate: a Jenkins shared-library step that runs the canary gate until it decides.
//
//   String verdict = canaryGate(release: 'web-1.2.3', policy: 'deploy/canary.yaml',
//                               canary: 'asg:web-canary', baseline: 'asg:web-baseline')
//
// Returns 'pass', 'fail', 'inconclusive' (still undecided at the end of the lifetime, when the
// policy lets a canary end undecided) or 'error' (could not judge). It never fails the build
// itself: the pipeline decides what a verdict means (promote, roll back). It archives the JSON
// verdict and publishes the JUnit report (one test case per metric) of the run.
//
// Thin on purpose: the judging, the JUnit report and the validation of names are the `gate`
// CLI's (or the Lambda's); this step only builds the command, runs it and maps its exit code
// (0 pass, 1 fail, 3 inconclusive, 4 could not judge, anything else: could not judge).
//
// Arguments (see jenkins/README.md):
//   release, policy     required. In lambda mode `policy` is what the Lambda accepts: an
//                       s3://BUCKET/policies/KEY (the stack's bucket) or ssm:/canary-gate/NAME
//                       reference, or a Map (inline policy).
//   canary, baseline    scopes, override the policy's.
//   mode                'cli' (default: `gate check --watch` on the agent) or 'lambda'.
//   interval, lifetime  cli mode: override the policy's (e.g. '1m', '2h').
//   deployedAt          when the canary started (ISO 8601 with Z or an offset, or epoch);
//                       default the first check.
//   examinePast         true: judge a deploy whose canary window is already over (a recorded
//                       canary); the gate refuses such a deploy otherwise.
//   allowDemo           true: a pass from a demo source (replay, simulate) stays a pass; by
//                       default it is an error (it judged no metric of this release).
//   rollout             true: shift the ALB's traffic to the canary in the policy's `rollout` steps,
//                       each judged (`gate rollout --watch`; in lambda mode "rollout": true, and
//                       a function is invoked once more with "rollout_step" to move to a step).
//                       'pass' once the last step passed; a failed step has sent the traffic back.
//   gate, store         cli mode: the gate command (default 'gate'), its --store file.
//   function            lambda mode: the analyzer function, invoked once per `pollSeconds`, about
//                       the deploy its first answer judged (a redeploy meanwhile: 'error').
//   stateMachine        lambda mode: the state machine ARN running the whole canary instead
//                       (its execution is stopped if the build is aborted while it runs).
//   region, pollSeconds lambda mode: the AWS region; seconds between invocations / polls (60).
//   python              lambda mode: the Python with canary-gate that writes the JUnit report
//                       ('python3'); without it the report is skipped, never the verdict.
//   outputDir           where the JSON verdict and the JUnit XML go ('canary-gate').

import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic

def call(Map args = [:]) {
    Map opts = [mode: 'cli', gate: 'gate', python: 'python3', outputDir: 'canary-gate', pollSeconds: 60] + args
    validate(args, opts)

    String base = "${opts.outputDir}/${fileName(opts.release as String)}"
    String jsonFile = "${base}.json"
    String junitFile = "${base}.xml"
    sh(script: "mkdir -p ${q(opts.outputDir)} && rm -f ${q(jsonFile)} ${q(junitFile)}")

    int code
    if (opts.mode == 'cli') {
        code = sh(returnStatus: true, script: cliCommand(opts, jsonFile, junitFile)) as int
    } else {
        code = opts.stateMachine ? runStateMachine(opts, base, jsonFile) : runFunction(opts, base, jsonFile)
    }
    if (opts.mode != 'cli' || opts.rollout) {
        // The Lambda and `gate rollout` answer JSON only: the same module as `gate check --junit`
        // turns it into JUnit.
        int written = sh(returnStatus: true, script: "${opts.python} -m gate.junit --output ${q(junitFile)} " +
                                                     "--release=${q(opts.release)} -- ${q(jsonFile)}") as int
        if (written != 0 && !fileExists(junitFile)) {
            echo "canaryGate: no JUnit report (is canary-gate installed for ${opts.python}?)"
        }
    }
    String verdict = verdicts().get(code, 'error')
    if (verdict == 'pass' && !opts.allowDemo && demoSource(jsonFile)) {
        // A replayed or simulated verdict judged no metric of this release: never a promotion.
        echo "canaryGate: the pass came from a demo source (${demoSource(jsonFile)}), not the release's " +
             'metrics: error (allowDemo: true to try the step on a demo)'
        verdict = 'error'
    }

    archiveArtifacts(artifacts: "${base}.json", allowEmptyArchive: true)
    // The verdict decides the build, not the test report: the pipeline promotes or rolls back.
    junit(testResults: junitFile, allowEmptyResults: true, skipMarkingBuildUnstable: true)
    String unexpected = verdicts().containsKey(code) ? '' : ', unexpected: could not judge'
    echo "canaryGate: release ${opts.release}: ${verdict} (exit code ${code}${unexpected})"
    return verdict
}

// The demo source a verdict came from (`"demo"` in its JSON: replay, simulate), or null.
private String demoSource(String jsonFile) {
    return fileExists(jsonFile) ? parseJson(readFile(jsonFile)).demo as String : null
}

// The exit codes of `gate check` (and `exit_code` in the Lambda's answer).
private Map verdicts() {
    return [0: 'pass', 1: 'fail', 3: 'inconclusive', 4: 'error']
}

private void validate(Map args, Map opts) {
    List known = ['release', 'policy', 'canary', 'baseline', 'mode', 'interval', 'lifetime', 'deployedAt',
                  'examinePast', 'allowDemo', 'gate', 'store', 'function', 'stateMachine', 'region', 'pollSeconds',
                  'python', 'outputDir', 'rollout']
    for (Object name : args.keySet()) {
        if (!known.contains(name)) {
            error("canaryGate: unknown argument '${name}' (known: ${known.join(', ')})")
        }
    }
    for (String name : ['release', 'policy']) {
        if (!opts[name]) {
            error("canaryGate: missing required argument '${name}'")
        }
    }
    if (args.containsKey('examinePast') && !(args.examinePast instanceof Boolean)) {
        error("canaryGate: 'examinePast' must be true or false, got '${args.examinePast}'")
    }
    if (args.containsKey('rollout') && !(args.rollout instanceof Boolean)) {
        error("canaryGate: 'rollout' must be true or false, got '${args.rollout}'")
    }
    if (opts.rollout && (opts.interval || opts.lifetime || opts.examinePast)) {
        error("canaryGate: 'interval', 'lifetime' and 'examinePast' do not go with 'rollout': " +
              "its steps are the policy's")
    }
    if (opts.mode == 'lambda') {
        if (!opts.function == !opts.stateMachine) {
            error("canaryGate: mode 'lambda' needs exactly one of 'function' (name or ARN) or 'stateMachine' (ARN)")
        }
        if (opts.interval || opts.lifetime) {
            error("canaryGate: 'interval' and 'lifetime' are cli-mode overrides; in lambda mode they are the policy's")
        }
        if (!((opts.pollSeconds as String) ==~ /[1-9][0-9]*/)) {
            error("canaryGate: 'pollSeconds' must be a whole number of seconds, got '${opts.pollSeconds}'")
        }
    } else if (opts.mode != 'cli') {
        error("canaryGate: argument 'mode' must be 'cli' or 'lambda', got '${opts.mode}'")
    }
}

// `gate check ... --watch`: the JSON verdict on stdout goes to the file, progress to the log.
// The release comes last, after `--`: a release named `--help` is then a release (which the gate
// refuses), never an option (help printed, exit 0: a pass).
private String cliCommand(Map opts, String jsonFile, String junitFile) {
    List<String> words = [opts.gate as String, opts.rollout ? 'rollout' : 'check', '--policy', q(opts.policy)]
    Map options = ['--canary': opts.canary, '--baseline': opts.baseline, '--interval': opts.interval,
                   '--lifetime': opts.lifetime, '--deployed-at': opts.deployedAt, '--store': opts.store]
    for (Map.Entry option : options.entrySet()) {
        if (option.value != null && option.value != '') {
            words << (option.key as String) << q(option.value)
        }
    }
    if (opts.examinePast) {
        words << '--examine-past'
    }
    words << '--watch' << '--json'
    if (!opts.rollout) {  // `gate rollout` answers JSON only: the step turns it into JUnit as for the Lambda
        words << '--junit' << q(junitFile)
    }
    words << '--' << q(opts.release)
    return words.join(' ') + " > ${q(jsonFile)}"
}

// The Lambda's event; its answer is `gate check --json`'s verdict plus exit_code, or an error.
private Map event(Map opts) {
    Map event = [release: opts.release as String, policy: opts.policy]
    for (String name : ['canary', 'baseline']) {
        if (opts[name]) {
            event[name] = opts[name] as String
        }
    }
    if (opts.deployedAt) {
        event.deployed_at = opts.deployedAt as String
    }
    if (opts.examinePast) {
        event.examine_past = true
    }
    if (opts.rollout) {
        event.rollout = true
    }
    return event
}

private String aws(Map opts) {
    return 'aws' + (opts.region ? " --region ${q(opts.region)}" : '')
}

// One evaluation per invocation, every pollSeconds, until the answer is decisive or final. In a
// rollout, an answer naming the next step is followed by one invocation that moves to it.
// The first answer pins the deploy (issue 22, as the state machine's PinDeploy): every later
// invocation asks about that deploy (its `same_deploy`: its deployed_at), so a redeploy of the
// release meanwhile (another build) is never judged by this build; the analyzer refuses a pinned
// deploy that is no longer the release's, and an answer about another deploy is could-not-judge.
private int runFunction(Map opts, String base, String jsonFile) {
    String eventFile = "${base}-event.json"
    Map request = event(opts)
    writeFile(file: eventFile, text: JsonOutput.toJson(request))
    Map pinned = null
    while (true) {
        Map answer = invoke(opts, base, eventFile, jsonFile)
        int code = exitCode(answer)
        if (code != 4 && !sameDeploy(pinned, answer, jsonFile)) {
            return 4
        }
        if (pinned == null && code != 4) {
            pinned = deployOf(answer)
            if (!opts.deployedAt) {  // a given deployedAt pins it already
                request += pinned
                writeFile(file: eventFile, text: JsonOutput.toJson(request))
            }
        }
        if (code == 4 && answer.error) {
            echo "canaryGate: could not judge: ${answer.error}"
        }
        if (code != 3 || answer.final == true) {
            return code
        }
        Object next = answer.rollout instanceof Map ? answer.rollout.next_step : null
        if (opts.rollout && next instanceof Number) {
            String stepFile = "${base}-step.json"
            writeFile(file: stepFile, text: JsonOutput.toJson(request + [rollout_step: next]))
            Map stepped = invoke(opts, base, stepFile, jsonFile)
            if (exitCode(stepped) == 4 || !sameDeploy(pinned, stepped, jsonFile)) {
                return 4
            }
            echo "canaryGate: traffic step ${next} taken: ${stepped.reason}"
        } else {
            echo "canaryGate: inconclusive, next evaluation in ${opts.pollSeconds} s: ${answer.reason}"
        }
        sleep(time: opts.pollSeconds as int, unit: 'SECONDS')
    }
}

// The deploy an answer judged: the fields that ask about it again (`same_deploy`), else (an answer
// recorded before the analyzer said so) its deployed_at; empty when it names none.
private Map deployOf(Map answer) {
    if (answer.same_deploy instanceof Map && answer.same_deploy) {
        return answer.same_deploy as Map
    }
    return answer.deployed_at ? [deployed_at: answer.deployed_at] : [:]
}

// Whether a verdict is about the pinned deploy (any deploy before the first answer, but one it
// names). If not, the answer in jsonFile is replaced by an error: its verdict is another deploy's.
private boolean sameDeploy(Map pinned, Map answer, String jsonFile) {
    Map judged = deployOf(answer)
    if (judged && (pinned == null || judged == pinned)) {
        return true
    }
    String problem = judged.isEmpty() ? 'the answer names no deploy (no same_deploy, no deployed_at): ' +
                                      'it cannot be told to be this build\'s' :
        "the answer is about another deploy (${JsonOutput.toJson(judged)}) than this build's " +
        "(${JsonOutput.toJson(pinned)}): the release was redeployed meanwhile"
    echo "canaryGate: ${problem}"
    writeFile(file: jsonFile, text: JsonOutput.toJson([release: answer.release, verdict: 'error', error: problem,
                                                       judged: answer]))
    return false
}

// One invocation with the event in `eventFile`; its answer (in jsonFile), or an empty Map (could
// not judge) when the CLI or the function failed.
private Map invoke(Map opts, String base, String eventFile, String jsonFile) {
    String invokeFile = "${base}-invoke.json"
    // Read timeout at Lambda's own 15 minutes: the CLI's default (60 s) would retry, i.e.
    // judge twice, a long evaluation. JSON whatever the agent's configured output (with
    // text, FunctionError would not be read and a crashed function not noticed).
    int status = sh(returnStatus: true, script: "${aws(opts)} lambda invoke --output json --cli-read-timeout 900 " +
                    "--function-name ${q(opts.function)} --payload fileb://${q(eventFile)} " +
                    "${q(jsonFile)} > ${q(invokeFile)}") as int
    if (status != 0) {
        echo "canaryGate: aws lambda invoke failed (exit code ${status})"
        return [:]
    }
    Map invoked = parseJson(readFile(invokeFile))
    if (invoked.FunctionError) {
        echo "canaryGate: the function failed (${invoked.FunctionError}): see ${jsonFile}"
        return [:]
    }
    return parseJson(readFile(jsonFile))
}

// The state machine runs the whole canary (evaluate, wait the policy's interval, repeat); its input
// is the same event as the function's (without `now`: it judges the current moment); poll it.
private int runStateMachine(Map opts, String base, String jsonFile) {
    String eventFile = "${base}-event.json"
    String startFile = "${base}-start.txt"
    writeFile(file: eventFile, text: JsonOutput.toJson(event(opts)))
    // returnStatus, not returnStdout (which throws): a refused start is could-not-judge, 'error'.
    int started = sh(returnStatus: true, script: "${aws(opts)} stepfunctions start-execution " +
                     "--state-machine-arn ${q(opts.stateMachine)} --input file://${q(eventFile)} " +
                     "--query executionArn --output text > ${q(startFile)}") as int
    String execution = started == 0 ? readFile(startFile).trim() : ''
    if (!execution.startsWith('arn:')) {
        echo "canaryGate: aws stepfunctions start-execution failed (exit code ${started}): ${execution}"
        writeFile(file: jsonFile, text: JsonOutput.toJson([release: opts.release as String, verdict: 'error',
                                                           error: 'state machine execution not started']))
        return 4
    }
    echo "canaryGate: started ${execution}"
    Map watched = [over: false]
    try {
        return watchExecution(opts, execution, base, jsonFile, watched)
    } finally {
        // Aborted (FlowInterruptedException in `sleep`), crashed or given up while the loop still
        // runs: stopped, or it would go on judging and setting traffic steps for up to 8 days,
        // after the pipeline has rolled back. Whatever ended the watch then ends the build.
        if (!watched.over) {
            stopExecution(opts, execution)
        }
    }
}

// Polls the execution until it ends (watched.over: it is no longer running); its exit code.
private int watchExecution(Map opts, String execution, String base, String jsonFile, Map watched) {
    String describeFile = "${base}-execution.json"
    while (true) {
        int status = sh(returnStatus: true, script: "${aws(opts)} stepfunctions describe-execution " +
                        "--execution-arn ${q(execution)} --output json > ${q(describeFile)}") as int
        if (status != 0) {
            echo "canaryGate: aws stepfunctions describe-execution failed (exit code ${status})"
            return 4
        }
        Map described = parseJson(readFile(describeFile))
        watched.over = described.status != null && described.status != 'RUNNING'
        if (described.status == 'SUCCEEDED') {
            // The output is {verdict, exit_code, answer}: the analyzer's last answer is the verdict.
            Object answer = parseJson(described.output as String).answer
            if (!(answer instanceof Map)) {
                echo "canaryGate: execution output without an answer: ${described.output}"
                answer = [release: opts.release as String, verdict: 'error',
                          error: 'state machine output without an answer']
            }
            writeFile(file: jsonFile, text: JsonOutput.toJson(answer))
            return exitCode(answer as Map)
        }
        if (described.status != 'RUNNING') {
            echo "canaryGate: execution ${described.status}: ${described.error ?: ''} ${described.cause ?: ''}"
            writeFile(file: jsonFile, text: JsonOutput.toJson([release: opts.release as String, verdict: 'error',
                                                               error: "state machine execution ${described.status}"]))
            return 4
        }
        sleep(time: opts.pollSeconds as int, unit: 'SECONDS')
    }
}

// The loop stopped (the role may: states:StopExecution); a refusal says what to stop by hand.
private void stopExecution(Map opts, String execution) {
    int stopped = sh(returnStatus: true, script: "${aws(opts)} stepfunctions stop-execution " +
                     "--execution-arn ${q(execution)} --error CanaryGate.PipelineStopped " +
                     "--cause 'the pipeline stopped watching the canary'") as int
    echo(stopped == 0 ? "canaryGate: stopped ${execution}" :
         "canaryGate: aws stepfunctions stop-execution failed (exit code ${stopped}): stop ${execution} by hand, " +
         'or it goes on judging the canary and setting its traffic')
}

// An answer that is not a verdict (an error, garbage) is a could-not-judge, never a pass.
private int exitCode(Map answer) {
    Map codes = [pass: 0, fail: 1, inconclusive: 3]
    Object code = codes.get(answer.verdict)
    return code == null ? 4 : code as int
}

// Not JSON, or not an object: empty, which every caller reads as could-not-judge.
private Map parseJson(String text) {
    try {
        Object parsed = new JsonSlurperClassic().parseText(text ?: '')
        return parsed instanceof Map ? (Map) parsed : [:]
    } catch (Exception ignored) {
        return [:]
    }
}

// One POSIX shell word, whatever the value holds: 'it'\''s'.
private String q(Object value) {
    return "'" + (value as String).replace("'", "'\\''") + "'"
}

// The release as a file name: gate.release.file_name's rule, so that `web/1.2` and `web_1.2`
// never share (and overwrite) one verdict file. A name that had to be altered gets a short hash
// of the exact name (SHA-256 of its UTF-8, 10 hex digits).
private String fileName(String release) {
    String name = release.replaceAll('[^A-Za-z0-9._-]+', '_').replaceAll('^[._]+|[._]+$', '') ?: 'release'
    if (name == release && name.length() <= 150) {
        return name
    }
    String digest = java.security.MessageDigest.getInstance('SHA-256')
        .digest(release.getBytes('UTF-8')).encodeHex().toString().substring(0, 10)
    return "${name.take(139)}-${digest}"
}
