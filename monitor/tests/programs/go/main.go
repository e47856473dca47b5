package main

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	ch := make(chan int)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(i) * time.Millisecond)
			ch <- i * i
		}(i)
	}
	go func() { wg.Wait(); close(ch) }()
	sum := 0
	for v := range ch {
		sum += v
	}
	// os/signal: the runtime's signal thread hands SIGUSR1 to a channel
	// (its handler runs on the receiving thread's own signal stack).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		fmt.Println("kill:", err)
		os.Exit(1)
	}
	select {
	case s := <-sigs:
		sum += 1000
		fmt.Println("signal:", s)
	case <-time.After(10 * time.Second):
		fmt.Println("no signal within 10 s")
		os.Exit(1)
	}
	dir := os.Getenv("OUT")
	if dir == "" {
		dir = "."
	}
	path := dir + "/go-out.txt"
	if err := os.WriteFile(path, []byte(fmt.Sprintf("sum %d\n", sum)), 0o644); err != nil {
		fmt.Println("write:", err)
		os.Exit(1)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Println("read:", err)
		os.Exit(1)
	}
	fmt.Print(string(b))
}
