from evalguard.cli import main

main()
