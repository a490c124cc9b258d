// File-driven testbench of the GEMM array (hw/sequencer.py), spec §6: stimulus and results
// travel as $readmemh/$writememh images in the §1.2 layout. Built with `verilator --binary` or
// Icarus Verilog (-g2012) by sim/harness/__init__.py, which passes the array's size and the
// memory depths as macros and the GEMM as plusargs:
//   +M=<rows of A> +N=<rows of W> +KG=<groups along K>
//   +A=<file>  M*KG lines, group k of A row m at line m*KG + k, 144-bit §1.2 words (MX6 zero-extended)
//   +W=<file>  N*KG lines, the same for W
//   +F=<file>  KG lines, one hex digit: bit 0 = group k of A is MX9, bit 1 = group k of W is MX9
//   +C=<file>  written: M*N lines, C[m, n] at line m*N + n, FP32 bit patterns
//   +GAP=<0..99> +STALL=<0..99> +SEED=<n>  percent of cycles the operand streams are held
//                                          invalid / the output stream not ready (default 0)
//   +VCD=<file> waves (Icarus always; Verilator when built with -DWAVES and --trace)
// It prints "HARNESS cycles=<n>", n counted from the command's transfer to the last output
// row's transfer, both included.
`timescale 1ns/1ps

module gemm_tb;
    localparam integer R = `ROWS;
    localparam integer C = `COLS;
    localparam integer GW = 144;          // §1.2 word of the widest format (MX9)
    localparam integer TW = GW + 1;       // with its precision tag (hw/layouts.py TaggedGroup)
    localparam integer MB = `M_BITS;
    localparam integer NB = `N_BITS;
    localparam integer KB = `KG_BITS;
    localparam integer CB = `COL_BITS;

    reg clk = 1'b0;
    reg rst = 1'b1;
    always #5 clk = ~clk;

    reg [GW-1:0] amem [0:`A_DEPTH-1];
    reg [GW-1:0] wmem [0:`W_DEPTH-1];
    reg [3:0]    fmem [0:`KG_DEPTH-1];
    reg [31:0]   cmem [0:`C_DEPTH-1];

    integer M, N, KG, gap_pct, stall_pct, seed, max_cycles;
    reg [1023:0] a_file, w_file, f_file, c_file, vcd_file;

    // DUT ports
    reg               cmd_valid;
    wire              cmd_ready;
    wire [MB+NB+KB-1:0] cmd_payload = {KG[KB-1:0], N[NB-1:0], M[MB-1:0]};
    reg               op_valid;
    wire              a_ready, w_ready;
    reg  [R*TW-1:0]   a_payload;
    reg  [C*TW-1:0]   w_payload;
    reg               o_ready;
    wire              o_valid;
    wire [C*32+C+MB+CB-1:0] o_payload;
    wire              busy;

    `TOP dut (
        .clk(clk), .rst(rst),
        .cmd__valid(cmd_valid), .cmd__ready(cmd_ready), .cmd__payload(cmd_payload),
        .a__valid(op_valid), .a__ready(a_ready), .a__payload(a_payload),
        .w__valid(op_valid), .w__ready(w_ready), .w__payload(w_payload),
        .o__valid(o_valid), .o__ready(o_ready), .o__payload(o_payload),
        .busy(busy)
    );

    // Feeder: the operand order of hw/sequencer.py (tiles row-major, K steps inner).
    integer fm0, fn0, fk, feeding, r, c;
    always @* begin
        for (r = 0; r < R; r = r + 1)
            a_payload[r*TW +: TW] = (fm0 + r < M) ? {fmem[fk][0], amem[(fm0 + r) * KG + fk]}
                                                  : {fmem[fk][0], {GW{1'b0}}};
        for (c = 0; c < C; c = c + 1)
            w_payload[c*TW +: TW] = (fn0 + c < N) ? {fmem[fk][1], wmem[(fn0 + c) * KG + fk]}
                                                  : {fmem[fk][1], {GW{1'b0}}};
    end

    integer cycle, start_cycle, rows_out, rows_total, lane, started, row_m, col_n0;
    wire [MB-1:0] o_row  = o_payload[C*32+C +: MB];
    wire [CB-1:0] o_col  = o_payload[C*32+C+MB +: CB];
    wire [C-1:0]  o_mask = o_payload[C*32 +: C];

    initial begin
        if (!$value$plusargs("M=%d", M) || !$value$plusargs("N=%d", N)
                || !$value$plusargs("KG=%d", KG)) begin
            $display("HARNESS error: +M, +N and +KG are required");
            $finish;
        end
        if (!$value$plusargs("GAP=%d", gap_pct)) gap_pct = 0;
        if (!$value$plusargs("STALL=%d", stall_pct)) stall_pct = 0;
        if (!$value$plusargs("SEED=%d", seed)) seed = 1;
        if (!$value$plusargs("MAXCYCLES=%d", max_cycles)) max_cycles = 2000000000;
        if (!$value$plusargs("A=%s", a_file) || !$value$plusargs("W=%s", w_file)
                || !$value$plusargs("F=%s", f_file) || !$value$plusargs("C=%s", c_file)) begin
            $display("HARNESS error: +A, +W, +F and +C are required");
            $finish;
        end
`ifdef WAVES
        if ($value$plusargs("VCD=%s", vcd_file)) begin
            $dumpfile(vcd_file);
            $dumpvars(0, gemm_tb);
        end
`endif
        $readmemh(a_file, amem, 0, M * KG - 1);
        $readmemh(w_file, wmem, 0, N * KG - 1);
        $readmemh(f_file, fmem, 0, KG - 1);
        rows_total = M * ((N + C - 1) / C);
        cmd_valid = 1'b0; op_valid = 1'b0; o_ready = 1'b0;
        fm0 = 0; fn0 = 0; fk = 0; feeding = 0; started = 0;
        cycle = 0; start_cycle = 0; rows_out = 0;
        repeat (3) @(posedge clk);
        rst <= 1'b0;
        cmd_valid <= 1'b1;
    end

    always @(posedge clk) begin
        if (!rst) begin
            cycle <= cycle + 1;
            if (cycle > max_cycles) begin
                $display("HARNESS error: timeout after %0d cycles, %0d of %0d rows out",
                         cycle, rows_out, rows_total);
                $finish;
            end
            if (cmd_valid && cmd_ready) begin
                cmd_valid <= 1'b0;
                feeding = 1;
                start_cycle <= cycle;
            end
            if (op_valid && a_ready) begin
                if (fk + 1 < KG) fk = fk + 1;
                else begin
                    fk = 0;
                    if (fn0 + C < N) fn0 = fn0 + C;
                    else begin
                        fn0 = 0;
                        fm0 = fm0 + R;
                        if (fm0 >= M) feeding = 0;
                    end
                end
            end
            if (o_valid && o_ready) begin
                row_m = o_row;
                col_n0 = o_col * C;
                for (lane = 0; lane < C; lane = lane + 1)
                    if (o_mask[lane]) cmem[row_m * N + col_n0 + lane] = o_payload[lane*32 +: 32];
                rows_out = rows_out + 1;
                if (rows_out == rows_total) begin
                    $display("HARNESS cycles=%0d", cycle - start_cycle + 1);
                    $writememh(c_file, cmem, 0, M * N - 1);
                    $finish;
                end
            end
            // A gap never takes back an offered step (stream rule: valid holds until ready).
            op_valid <= feeding && ((op_valid && !a_ready) || gap_pct == 0
                                    || ($random(seed) % 100 + 100) % 100 >= gap_pct);
            o_ready <= stall_pct == 0 || ($random(seed) % 100 + 100) % 100 >= stall_pct;
        end
    end
endmodule
