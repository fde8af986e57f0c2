// keel-dataplane: the packet-forwarding process (see docs/dataplane.md).
//
//   keel-dataplane [--config FILE] [--seconds S] [-- EAL ARGS...]   run
//   keel-dataplane check-config FILE                                   validate a configuration file
//   keel-dataplane stats [--stats FILE] [--json]                       print the counters of a running (or stopped) data plane
import Foundation
import KeelDataPlane
import KeelStats

setvbuf(stdout, nil, _IOLBF, 0)

func die(_ s: String) -> Never {
    FileHandle.standardError.write(Data("keel-dataplane: \(s)\n".utf8))
    exit(1)
}

func log(_ s: String) { FileHandle.standardError.write(Data("keel-dataplane: \(s)\n".utf8)) }

let argv = CommandLine.arguments
let split = argv.firstIndex(of: "--") ?? argv.count
let own = Array(argv[1..<split])
let eal = split < argv.count ? Array(argv[(split + 1)...]) : []
func option(_ name: String) -> String? { own.firstIndex(of: name).flatMap { $0 + 1 < own.count ? own[$0 + 1] : nil } }
let defaultConfig = "/etc/keel/dataplane.yaml"

switch own.first {
case "check-config":
    guard own.count == 2 else { die("usage: keel-dataplane check-config FILE") }
    do {
        let c = try DataPlaneConfig.load(path: own[1])
        print("\(own[1]): valid: \(c.ports.count) port(s), \(c.pipeline ? "\(c.lcores.io.count) I/O + \(c.lcores.workers.count) worker lcores" : "\(c.lcores.io.count) run-to-completion lcore(s)")")
    } catch { die("\(error)") }
case "stats":
    let path = option("--stats") ?? ((try? DataPlaneConfig.load(path: option("--config") ?? defaultConfig))?.stats ?? "/dev/shm/keel.stats")
    do {
        let s = try StatsFile.open(path: path)
        print(own.contains("--json") ? StatsReport.json(s) : StatsReport.text(s), terminator: own.contains("--json") ? "\n" : "")
    } catch { die("\(error)") }
case .some(let a) where !a.hasPrefix("--"):
    die("unknown command \(a) (commands: check-config, stats; or run with --config FILE)")
default:
    let config: DataPlaneConfig
    do { config = try DataPlaneConfig.load(path: option("--config") ?? defaultConfig) } catch { die("\(error)") }
    let seconds = Double(option("--seconds") ?? "0") ?? 0
    DataPlane.installSignalHandlers()
    do {
        let dp = try DataPlane(config: config, eal: eal, log: log)
        try dp.run(seconds: seconds)
        print(StatsReport.json(dp.stats))
    } catch { die("\(error)") }
}
