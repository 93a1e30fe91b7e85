from distlab.cli import main

main()
