"""The door: the parser (parser), argument types and door checks (args), one module per command (list,
run, report, compare, export, speed, data, freeze, check_determinism), each with `options(args)`, which
checks every argument and builds one frozen options object, and `main(options)`; bench.cli.main
dispatches, importing only the command that runs, and maps failures to exit codes. Nothing below this
package sees the argparse namespace."""
