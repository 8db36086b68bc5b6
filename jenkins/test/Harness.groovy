// A small Jenkins for tests: evaluates the shared-library step (vars/*.groovy) and a declarative
// Jenkinsfile with the real Groovy interpreter and stubbed pipeline steps, and records what ran.
//
// The stubs follow Jenkins' documented behaviour where the tests depend on it: `sh` throws on a
// non-zero status unless returnStatus/returnStdout; `error` throws; a build result only gets
// worse; `catchError` records the failure and goes on; variables set by an `environment {}`
// directive cannot be changed later by `env.X = ...`; post conditions run in Jenkins' order
// (always ... failure, success, unstable, unsuccessful, cleanup); stages after a failed one are
// skipped; `junit` fails on a missing report unless allowEmptyResults, and marks the build
// UNSTABLE on failures unless skipMarkingBuildUnstable.
//
// Steps go through the script's binding: a Groovy Script resolves a method it does not define
// from a closure of that name in its binding, as Jenkins resolves steps.

import org.codehaus.groovy.runtime.InvokerHelper

class Harness {
    static void configure(Closure body, Object delegate) {
        Closure c = (Closure) body.clone()
        c.delegate = delegate
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c()
    }

    // -- the harness -----------------------------------------------------------------------------

    File jenkinsDir  // holds vars/ and Jenkinsfile
    File workspace
    Map params = [:]
    Env env = new Env()
    Build currentBuild = new Build()
    // What the test controls: sh(script, args) -> [status: int, stdout: String]; input(args) -> value.
    Closure onSh = { String script, Map args -> [status: 0, stdout: ''] }
    Closure onInput = { Map args -> throw new FlowInterrupted('no input expected') }
    Closure onSleep = { Object args -> null }  // e.g. throw new FlowInterrupted(...): the build aborted while it slept
    // What the test inspects.
    List<Map> calls = []
    List<String> log = []
    List<String> commands = []
    List<String> stagesRun = []      // parents (with nested stages {}) too, before their children
    List<String> stagesSkipped = []
    Map<String, List> stageOptions = [:]  // stage name -> its options {} calls, e.g. [['timeout', [[time: 4, unit: 'HOURS']]]]
    List pipelineOptions = []
    List<Map> inputs = []
    List<Map> junitReports = []
    List<Map> archived = []
    private int timeouts = 0
    private Binding binding = new Binding()
    private Script script  // the Jenkinsfile being run, if any

    Harness(File jenkinsDir, File workspace) {
        this.jenkinsDir = jenkinsDir
        this.workspace = workspace
        env.values.putAll([BUILD_NUMBER: '42', JOB_NAME: 'web/main', WORKSPACE: workspace.path])
        binding.setVariable('env', env)
        binding.setVariable('params', params)
        binding.setVariable('currentBuild', currentBuild)
        binding.setVariable('any', 'any')
        for (String step : ['sh', 'echo', 'error', 'junit', 'archiveArtifacts', 'writeFile', 'readFile',
                            'fileExists', 'sleep', 'input', 'timeout', 'catchError', 'withCredentials', 'withAWS',
                            'string', 'usernamePassword', 'stage', 'script', 'dir', 'pipeline']) {
            String name = step
            binding.setVariable(name, { Object[] args ->
                calls << [step: name, args: args.toList()]
                this."step_${name}"(*args)
            })
        }
        binding.setVariable('canaryGate', { Map args -> stepScript().call(args) })
    }

    private static final Map<File, Class> COMPILED = [:]  // compiling is the slow part: once per file

    private Script load(File source, String text = null) {
        Class compiled = COMPILED[source]
        if (compiled == null) {
            GroovyClassLoader loader = new GroovyClassLoader(getClass().classLoader)
            compiled = loader.parseClass(text ?: source.text, source.name)
            COMPILED[source] = compiled
        }
        InvokerHelper.createScript(compiled, binding)
    }

    Script stepScript() { load(new File(jenkinsDir, 'vars/canaryGate.groovy')) }

    /** Calls the step as a pipeline would: canaryGate(args). */
    Object runStep(Map args) {
        binding.getVariable('canaryGate').call(args)
    }

    /** Runs the Jenkinsfile; the build's result (SUCCESS when nothing made it worse). */
    String runJenkinsfile() {
        // `@Library('...') _` loads the library in Jenkins; here the step is already bound.
        File jenkinsfile = new File(jenkinsDir, 'Jenkinsfile')
        script = load(jenkinsfile, jenkinsfile.text.replaceAll(/(?m)^@Library\(.*\)\s+_\s*$/, ''))
        script.run()
        currentBuild.currentResult
    }

    boolean ran(String fragment) { commands.any { it.contains(fragment) } }

    String logText() { log.join('\n') }

    File file(String path) { new File(path).isAbsolute() ? new File(path) : new File(workspace, path) }

    /** Runs a shell script for real, in the workspace with the build's environment. */
    Map realSh(String text) {
        ProcessBuilder builder = new ProcessBuilder('/bin/sh', '-e', '-c', text).directory(workspace)
        env.values.each { k, v -> if (v != null) { builder.environment().put(k, v) } }
        Process process = builder.start()
        StringBuilder out = new StringBuilder()
        StringBuilder err = new StringBuilder()
        process.waitForProcessOutput(out, err)
        if (err) {
            log << err.toString().trim()
        }
        [status: process.exitValue(), stdout: out.toString()]
    }

    // -- steps -------------------------------------------------------------------------------------

    def step_sh(String text) { step_sh([script: text]) }

    def step_sh(Map args) {
        String text = args.script as String
        commands << text
        log << "+ ${text}".toString()
        Map result = onSh(text, args) as Map
        int status = (result.status ?: 0) as int
        if (args.returnStatus) {
            return status
        }
        if (status != 0) {
            throw new PipelineAbort("script returned exit code ${status}")
        }
        if (args.returnStdout) {
            return (result.stdout ?: '') as String
        }
        if (result.stdout) {
            log << result.stdout.toString()
        }
        null
    }

    def step_echo(Object message) { log << message.toString(); null }

    def step_error(Object message) { throw new PipelineAbort(message.toString()) }  // logged where caught

    def step_junit(Map args) {
        File report = file(args.testResults as String)
        if (!report.isFile()) {
            if (!args.allowEmptyResults) {
                throw new PipelineAbort('No test report files were found. Configuration error?')
            }
            return [totalCount: 0, failCount: 0, skipCount: 0, passCount: 0]
        }
        def xml = new XmlSlurper().parse(report)
        def cases = xml.'**'.findAll { it.name() == 'testcase' }
        Map summary = [
            file: report.path, suite: xml.testsuite[0].@name.toString(),
            totalCount: cases.size(),
            failCount: cases.count { it.failure.size() > 0 || it.error.size() > 0 },
            skipCount: cases.count { it.skipped.size() > 0 },
            failures: cases.findAll { it.failure.size() > 0 || it.error.size() > 0 }.collect { it.@name.toString() },
            cases: cases.collect { it.@name.toString() },
        ]
        summary.passCount = summary.totalCount - summary.failCount - summary.skipCount
        junitReports << summary
        if (summary.failCount > 0 && !args.skipMarkingBuildUnstable) {
            currentBuild.result = 'UNSTABLE'
        }
        summary
    }

    def step_archiveArtifacts(Map args) {
        String pattern = args.artifacts as String
        List<File> found = file(pattern).isFile() ? [file(pattern)] : []
        if (!found && !args.allowEmptyArchive) {
            throw new PipelineAbort("No artifacts found that match the file pattern \"${pattern}\"")
        }
        archived << [pattern: pattern, files: found]
        null
    }

    def step_writeFile(Map args) {
        File target = file(args.file as String)
        target.parentFile?.mkdirs()
        target.setText(args.text as String, 'UTF-8')
        null
    }

    def step_readFile(String path) { step_readFile([file: path]) }

    def step_readFile(Map args) {
        File source = file(args.file as String)
        if (!source.isFile()) {
            throw new PipelineAbort("java.nio.file.NoSuchFileException: ${source}")
        }
        source.getText('UTF-8')
    }

    def step_fileExists(String path) { file(path).exists() }

    def step_sleep(Map args) { onSleep(args) }  // recorded in calls, not slept

    def step_sleep(Number seconds) { onSleep(seconds) }

    def step_input(Map args) {
        inputs << [args: args, insideTimeout: timeouts > 0]
        onInput(args)
    }

    def step_timeout(Map args, Closure body) {
        timeouts++
        try {
            body()
        } finally {
            timeouts--
        }
    }

    def step_catchError(Closure body) { step_catchError([:], body) }

    def step_catchError(Map args, Closure body) {
        try {
            body()
        } catch (FlowInterrupted e) {
            currentBuild.result = 'ABORTED'
            throw e
        } catch (Exception e) {
            log << "ERROR: ${e.message}".toString()
            currentBuild.result = (args.buildResult ?: 'FAILURE') as String
        }
        null
    }

    // The credentials are in the environment of the body only (masked here: never a real secret).
    def step_withCredentials(List bindings, Closure body) {
        List<String> names = bindings.findAll { it.variable }.collect { it.variable as String }
        Map saved = env.values.subMap(names)
        names.each { env.values[it] = '****' }
        try {
            body()
        } finally {
            names.each { saved[it] == null ? env.values.remove(it) : env.values.put(it, saved[it]) }
        }
    }

    def step_withAWS(Map args, Closure body) { body() }

    def step_string(Map args) { [$class: 'StringBinding'] + args }

    def step_usernamePassword(Map args) { [$class: 'UsernamePasswordMultiBinding'] + args }

    def step_stage(String name, Closure body) { stagesRun << name; body() }

    def step_script(Closure body) { body() }

    def step_dir(String path, Closure body) { body() }

    // -- declarative pipeline ----------------------------------------------------------------------

    def step_pipeline(Closure body) {
        PipelineSpec spec = new PipelineSpec(harness: this)
        configure(body, spec)
        pipelineOptions = spec.options.calls.collect { [it[0], ((Object[]) it[1]).toList()] }
        if (spec.environment) {
            configure(spec.environment, new EnvironmentSpec(env))
        }
        runStages(spec.stages, false)
        runPost(spec.post)
        null
    }

    // Sequential stages (a stage may hold stages {} of its own): after a failure the rest are
    // skipped, nested ones included; a parent's `when` decides for its children. Returns whether
    // a stage failed.
    private boolean runStages(List<StageSpec> stages, boolean failedBefore) {
        boolean failed = failedBefore
        for (StageSpec stage : stages) {
            if (failed) {
                skip(stage)  // "skipped due to earlier failure(s)"
                continue
            }
            if (stage.when != null && !stage.when.evaluate()) {
                skip(stage)  // "skipped due to when conditional"
                continue
            }
            stagesRun << stage.name
            stageOptions[stage.name] = stage.options.calls.collect { [it[0], ((Object[]) it[1]).toList()] }
            try {
                if (stage.stages) {
                    failed = runStages(stage.stages, false)
                } else {
                    runBlock(stage.steps)
                }
            } catch (Exception e) {
                failed = true
                fail(e)
            }
            runPost(stage.post)
        }
        failed
    }

    private void skip(StageSpec stage) {
        stagesSkipped << stage.name
        stage.stages.each { skip(it) }
    }

    private void fail(Exception e) {
        log << "ERROR: ${e.message}".toString()
        currentBuild.result = e instanceof FlowInterrupted ? 'ABORTED' : 'FAILURE'
    }

    private void runPost(Map<String, Closure> blocks) {
        for (String condition : PostSpec.ORDER) {
            Closure block = blocks[condition]
            String result = currentBuild.currentResult
            boolean applies = [always: true, cleanup: true, aborted: result == 'ABORTED',
                               failure: result == 'FAILURE', success: result == 'SUCCESS',
                               unstable: result == 'UNSTABLE', unsuccessful: result != 'SUCCESS'][condition]
            if (block != null && applies) {
                try {
                    runBlock(block)
                } catch (Exception e) {
                    fail(e)
                }
            }
        }
    }

    // A steps {} block calls steps: resolve its names in the Jenkinsfile (and so its binding).
    private void runBlock(Closure block) {
        block.rehydrate(script, script, script).call()
    }
}

class Build {
    static final List ORDER = ['SUCCESS', 'UNSTABLE', 'FAILURE', 'NOT_BUILT', 'ABORTED']
    String result
    String description
    String displayName

    void setResult(String value) {  // Run.setResult: a result only gets worse
        if (!ORDER.contains(value)) {
            throw new IllegalArgumentException("no such build result: ${value}")
        }
        if (result == null || ORDER.indexOf(value) > ORDER.indexOf(result)) {
            result = value
        }
    }

    String getCurrentResult() { result ?: 'SUCCESS' }
}

class Env {  // `env`: strings; null when unset
    Map<String, String> values = [:]
    Set<String> fixed = [] as Set  // set by an environment {} directive: read-only after

    def propertyMissing(String name) { values[name] }

    def propertyMissing(String name, Object value) {
        if (!fixed.contains(name)) {
            values[name] = value == null ? null : value.toString()
        }
    }
}

// -- declarative DSL: the sections are collected, then run in Jenkins' order ---------------------

class Recorder {  // options {}, triggers {}, tools {}: recorded, not enforced
    List calls = []

    def methodMissing(String name, Object args) { calls << [name, args]; null }
}

class ParametersSpec {
    Map params

    def methodMissing(String name, Object args) {
        Map definition = ((Object[]) args)[0] as Map
        if (!params.containsKey(definition.name)) {
            params[definition.name] = definition.defaultValue
        }
        null
    }
}

class EnvironmentSpec {
    Env env

    EnvironmentSpec(Env env) { this.@env = env }

    void setProperty(String name, Object value) {
        Env target = this.@env
        target.propertyMissing(name, value)
        target.fixed << name
    }
}

class WhenSpec {
    List<Closure> conditions = []
    boolean any = false

    void expression(Closure condition) { conditions << condition }

    void allOf(Closure body) { conditions << nested(body, false) }

    void anyOf(Closure body) { conditions << nested(body, true) }

    void not(Closure body) { Closure inner = nested(body, false); conditions << { !inner() } }

    private Closure nested(Closure body, boolean anyOf) {
        WhenSpec spec = new WhenSpec(any: anyOf)
        Harness.configure(body, spec)
        return { spec.evaluate() }
    }

    boolean evaluate() {
        List<Boolean> results = conditions.collect { it() as boolean }
        any ? results.any() : results.every()
    }
}

class StageSpec {
    String name
    WhenSpec when
    Closure steps
    List<StageSpec> stages = []  // nested sequential stages
    Recorder options = new Recorder()
    Map<String, Closure> post = [:]

    void when(Closure body) { when = new WhenSpec(); Harness.configure(body, when) }

    void steps(Closure body) { steps = body }

    void post(Closure body) { PostSpec spec = new PostSpec(); Harness.configure(body, spec); post = spec.blocks }

    void stages(Closure body) { StagesSpec spec = new StagesSpec(); Harness.configure(body, spec); stages = spec.stages }

    void agent(Object ignored) {}

    void options(Closure body) { Harness.configure(body, options) }
}

class StagesSpec {
    List<StageSpec> stages = []

    void stage(String name, Closure body) {
        StageSpec spec = new StageSpec(name: name)
        Harness.configure(body, spec)
        stages << spec
    }
}

class PostSpec {
    static final List ORDER = ['always', 'changed', 'fixed', 'regression', 'aborted', 'failure', 'success',
                               'unstable', 'unsuccessful', 'cleanup']
    Map<String, Closure> blocks = [:]

    def methodMissing(String name, Object args) {
        if (!ORDER.contains(name)) {
            throw new MissingMethodException(name, PostSpec, (Object[]) args)
        }
        blocks[name] = ((Object[]) args)[0] as Closure
        null
    }
}

class PipelineSpec {
    Harness harness
    Recorder options = new Recorder()
    Closure environment
    List<StageSpec> stages = []
    Map<String, Closure> post = [:]

    void agent(Object ignored) {}

    void options(Closure body) { Harness.configure(body, options) }

    void triggers(Closure body) { Harness.configure(body, new Recorder()) }

    void tools(Closure body) { Harness.configure(body, new Recorder()) }

    void parameters(Closure body) { Harness.configure(body, new ParametersSpec(params: harness.params)) }

    void environment(Closure body) { environment = body }

    void stages(Closure body) { StagesSpec spec = new StagesSpec(); Harness.configure(body, spec); stages = spec.stages }

    void post(Closure body) { PostSpec spec = new PostSpec(); Harness.configure(body, spec); post = spec.blocks }
}
