// keel-dataplane: the packet-forwarding process (see docs/dataplane.md).
//
//   keel-dataplane [--config FILE] [--seconds S] [-- EAL ARGS...]   run
//   keel-dataplane check-config FILE                                   validate a settings file
//   keel-dataplane nics FILE                                           the data NICs keel-nics binds (checks FILE whole)
//   keel-dataplane stats [--stats FILE] [--json]                       print the counters of a running (or stopped) data plane
//
// FILE is keel-dataplane's own settings (Config/dataplane.yaml) or the
// appliance's (Config/keel.yaml); the default is /etc/keel/keel.yaml if it
// exists, else /etc/keel/dataplane.yaml.
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
let defaultConfig = FileManager.default.fileExists(atPath: "/etc/keel/keel.yaml") ? "/etc/keel/keel.yaml" : "/etc/keel/dataplane.yaml"

switch own.first {
case "check-config":
    guard own.count == 2 else { die("usage: keel-dataplane check-config FILE") }
    do {
        let c = try DataPlaneConfig.loadAny(path: own[1])
        print("\(own[1]): valid: \(c.ports.count) port(s), \(c.pipeline ? "\(c.lcores.io.count) I/O + \(c.lcores.workers.count) worker lcores" : "\(c.lcores.io.count) run-to-completion lcore(s)")")
    } catch { die("\(error)") }
case "nics":
    // For keel-nics: "driver D", "hugepages N", then "port NAME DEVICE INTERFACE" ("-" for none).
    guard own.count == 2 else { die("usage: keel-dataplane nics FILE") }
    do {
        let a = try ApplianceSettings.load(path: own[1])
        print("driver \(a.nicDriver)")
        print("hugepages \(a.hugepages)")
        for p in a.dataplane.ports { print("port \(p.name) \(p.device.isEmpty ? "-" : p.device) \(p.interface ?? "-")") }
    } catch { die("\(error)") }
case "stats":
    let path = option("--stats") ?? ((try? DataPlaneConfig.loadAny(path: option("--config") ?? defaultConfig))?.stats ?? "/dev/shm/keel.stats")
    do {
        let s = try StatsFile.open(path: path)
        print(own.contains("--json") ? StatsReport.json(s) : StatsReport.text(s), terminator: own.contains("--json") ? "\n" : "")
    } catch { die("\(error)") }
case .some(let a) where !a.hasPrefix("--"):
    die("unknown command \(a) (commands: check-config, stats; or run with --config FILE)")
default:
    var config: DataPlaneConfig
    do { config = try DataPlaneConfig.loadAny(path: option("--config") ?? defaultConfig) } catch {
        log("\(error)")
        exit(2) // a bad settings file: systemd does not restart until it is fixed
    }
    do { try config.resolveInterfaces() } catch { die("\(error)") }
    if let problem = DataPlane.hugepageShortfall(config: config, eal: eal) { die(problem) }
    let seconds = Double(option("--seconds") ?? "0") ?? 0
    DataPlane.installSignalHandlers()
    do {
        let dp = try DataPlane(config: config, eal: eal, log: log)
        try dp.run(seconds: seconds)
        print(StatsReport.json(dp.stats))
    } catch { die("\(error)") }
}
