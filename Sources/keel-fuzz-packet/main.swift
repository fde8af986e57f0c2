// The entry: libFuzzer's driver when built with it (Tests/fuzz.sh), else the
// corpus replay (CKeelFuzzMain).
import CKeelFuzzMain
import Foundation

exit(keel_fuzz_main(CommandLine.argc, CommandLine.unsafeArgv))
