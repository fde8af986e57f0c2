import ArgumentParser

@main
struct KeelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keel-bench",
        abstract: "Keel's benchmarks. Build with -c release; every figure comes with a reference measured in the same run.",
        subcommands: [LPMBench.self, MaglevBench.self, SwapBench.self, ForwardBench.self, LBBench.self, ControlBench.self]
    )
}
