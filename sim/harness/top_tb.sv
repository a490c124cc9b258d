// File-driven testbench of the accelerator top (hw/top.py), spec §3-§6: a layer's commands, its
// A and W groups, the order table and the MX6/MX9 map go in as $readmemh images; the array's FP32
// results and the next layer's packed groups come out of the same netlist as $writememh images.
// Built with `verilator --binary` or Icarus Verilog (-g2012) by sim/harness/top.py, which passes
// the top's size, payload widths and memory depths as macros and the images as plusargs:
//   +NCMD=<n> +P=<file>  the commands, one line each (hex, fields from bit 0 up, 32 bits each):
//                        m, n, kg, groups, a_off, w_off, f_off, c_off, then the top's command
//                        payload (hw.top.command_layout, CMD_W bits)
//   +A=<file> +W=<file>  §1.2 group words (144 bits), command i's A row r group k at line
//                        a_off + r * kg + k, its W likewise from w_off
//   +F=<file>            one hex digit per K group from f_off: bit 0 A is MX9, bit 1 W is MX9
//   +NROWS=<n> +T=<file> +X=<file>  order-table rows (hw.reorder row layout's 16 channels,
//                        CHW bits) and their MX9 flags (the map), row i at table address i
//   +NC=<n> +C=<file>    written: n lines, command i's C[r, j] at line c_off + r * n + j, FP32 bits
//   +NO=<n> +O=<file>    written: the n next-layer groups (145 bits: the MX9 tag above the
//                        §1.2 word) in the order they left the top
//   +STALL=<0..99> +SEED=<n>  percent of cycles the c and o streams are not ready (default 0)
//   +VCD=<file>          waves (Icarus always; Verilator when built with -DWAVES and --trace)
// It prints, per command, "TOP cmd=<i> array_cycles=<a> cycles=<c>": a from the command's
// transfer to its last result row's, c to its last result row's or next-layer group's,
// whichever is later, both ends included; then "TOP cycles=<n>" from the first command's
// transfer to the last command's end, the table load excluded.
`timescale 1ns/1ps

module top_tb;
    localparam integer R = `ROWS;
    localparam integer C = `COLS;
    localparam integer GW = 144;
    localparam integer TW = GW + 1;
    localparam integer MB = `M_BITS;
    localparam integer CB = `COL_BITS;
    localparam integer CMDW = `CMD_W;
    localparam integer PW = 256 + CMDW;
    localparam integer CHW = `CHW;
    localparam integer AW = `ADDR_W;

    reg clk = 1'b0;
    reg rst = 1'b1;
    always #5 clk = ~clk;

    reg [GW-1:0]  amem [0:`A_DEPTH-1];
    reg [GW-1:0]  wmem [0:`W_DEPTH-1];
    reg [3:0]     fmem [0:`F_DEPTH-1];
    reg [31:0]    cmem [0:`C_DEPTH-1];
    reg [TW-1:0]  omem [0:`O_DEPTH-1];
    reg [PW-1:0]  pmem [0:`P_DEPTH-1];
    reg [CHW-1:0] tmem [0:`T_DEPTH-1];
    reg [3:0]     xmem [0:`T_DEPTH-1];

    integer NCMD, NROWS, NO, NC, stall_pct, seed, max_cycles;
    reg [1023:0] p_file, a_file, w_file, f_file, t_file, x_file, c_file, o_file, vcd_file;

    // DUT ports
    reg               cmd_valid;
    wire              cmd_ready;
    reg  [CMDW-1:0]   cmd_payload;
    reg               op_valid;
    wire              a_ready, w_ready;
    reg  [R*TW-1:0]   a_payload;
    reg  [C*TW-1:0]   w_payload;
    reg               cfg_valid;
    wire              cfg_ready;
    reg  [AW+CHW:0]   cfg_payload;
    reg               c_ready, o_ready;
    wire              c_valid, o_valid;
    wire [C*32+C+MB+CB-1:0] c_payload;
    wire [TW-1:0]     o_payload;
    wire              busy;

    `TOP dut (
        .clk(clk), .rst(rst),
        .cmd__valid(cmd_valid), .cmd__ready(cmd_ready), .cmd__payload(cmd_payload),
        .a__valid(op_valid), .a__ready(a_ready), .a__payload(a_payload),
        .w__valid(op_valid), .w__ready(w_ready), .w__payload(w_payload),
        .cfg__valid(cfg_valid), .cfg__ready(cfg_ready), .cfg__payload(cfg_payload),
        .c__valid(c_valid), .c__ready(c_ready), .c__payload(c_payload),
        .o__valid(o_valid), .o__ready(o_ready), .o__payload(o_payload),
        .busy(busy)
    );

    // The command being run: its fields (see the header).
    integer M, N, KG, G, AO, WO, FO, CO;
    // Feeder: the operand order of hw/sequencer.py (tiles row-major, K steps inner).
    integer fm0, fn0, fk, feeding, r, c;
    always @* begin
        for (r = 0; r < R; r = r + 1)
            a_payload[r*TW +: TW] = (fm0 + r < M) ? {fmem[FO + fk][0], amem[AO + (fm0 + r) * KG + fk]}
                                                  : {fmem[FO + fk][0], {GW{1'b0}}};
        for (c = 0; c < C; c = c + 1)
            w_payload[c*TW +: TW] = (fn0 + c < N) ? {fmem[FO + fk][1], wmem[WO + (fn0 + c) * KG + fk]}
                                                  : {fmem[FO + fk][1], {GW{1'b0}}};
    end

    integer cycle, ci, running, loading, row_i, lane, rows_out, rows_total, o_cmd, o_total;
    integer start_cycle, first_cycle, last_c, last_any, row_m, col_n0;
    wire [MB-1:0] c_row  = c_payload[C*32+C +: MB];
    wire [CB-1:0] c_col  = c_payload[C*32+C+MB +: CB];
    wire [C-1:0]  c_mask = c_payload[C*32 +: C];

    task automatic load_command(input integer i);
        reg [PW-1:0] p;
        begin
            p = pmem[i];
            M = p[0 +: 32]; N = p[32 +: 32]; KG = p[64 +: 32]; G = p[96 +: 32];
            AO = p[128 +: 32]; WO = p[160 +: 32]; FO = p[192 +: 32]; CO = p[224 +: 32];
            cmd_payload = p[256 +: CMDW];
        end
    endtask

    initial begin
        if (!$value$plusargs("NCMD=%d", NCMD) || !$value$plusargs("NROWS=%d", NROWS)
                || !$value$plusargs("NO=%d", NO) || !$value$plusargs("NC=%d", NC)) begin
            $display("TOP error: +NCMD, +NROWS, +NO and +NC are required");
            $finish;
        end
        if (!$value$plusargs("STALL=%d", stall_pct)) stall_pct = 0;
        if (!$value$plusargs("SEED=%d", seed)) seed = 1;
        if (!$value$plusargs("MAXCYCLES=%d", max_cycles)) max_cycles = 2000000000;
        if (!$value$plusargs("P=%s", p_file) || !$value$plusargs("A=%s", a_file)
                || !$value$plusargs("W=%s", w_file) || !$value$plusargs("F=%s", f_file)
                || !$value$plusargs("T=%s", t_file) || !$value$plusargs("X=%s", x_file)
                || !$value$plusargs("C=%s", c_file) || !$value$plusargs("O=%s", o_file)) begin
            $display("TOP error: +P, +A, +W, +F, +T, +X, +C and +O are required");
            $finish;
        end
`ifdef WAVES
        if ($value$plusargs("VCD=%s", vcd_file)) begin
            $dumpfile(vcd_file);
            $dumpvars(0, top_tb);
        end
`endif
        $readmemh(p_file, pmem, 0, NCMD - 1);
        $readmemh(a_file, amem);
        $readmemh(w_file, wmem);
        $readmemh(f_file, fmem);
        if (NROWS > 0) begin
            $readmemh(t_file, tmem, 0, NROWS - 1);
            $readmemh(x_file, xmem, 0, NROWS - 1);
        end
        cmd_valid = 1'b0; op_valid = 1'b0; cfg_valid = 1'b0; c_ready = 1'b0; o_ready = 1'b0;
        cmd_payload = {CMDW{1'b0}}; cfg_payload = {(AW+CHW+1){1'b0}};
        M = 0; N = 0; KG = 1; G = 0; AO = 0; WO = 0; FO = 0; CO = 0;
        fm0 = 0; fn0 = 0; fk = 0; feeding = 0; running = 0; loading = 1; row_i = 0; ci = 0;
        cycle = 0; start_cycle = 0; first_cycle = 0; rows_out = 0; rows_total = 0;
        o_cmd = 0; o_total = 0; last_c = 0; last_any = 0;
        repeat (3) @(posedge clk);
        rst <= 1'b0;
    end

    always @(posedge clk) begin
        if (!rst) begin
            cycle <= cycle + 1;
            if (cycle > max_cycles) begin
                $display("TOP error: timeout after %0d cycles in command %0d: %0d of %0d rows, %0d of %0d groups out",
                         cycle, ci, rows_out, rows_total, o_cmd, M * G);
                $finish;
            end
            // Table load: one row per cycle through cfg (always ready), before any command.
            if (loading) begin
                if (cfg_valid && cfg_ready) row_i = row_i + 1;
                if (row_i < NROWS) begin
                    cfg_valid <= 1'b1;
                    cfg_payload <= {xmem[row_i][0], tmem[row_i], row_i[AW-1:0]};
                end else begin
                    cfg_valid <= 1'b0;
                    loading = 0;
                end
            end else if (!running && !cmd_valid) begin
                if (ci < NCMD) begin
                    load_command(ci);
                    rows_total = M * ((N + C - 1) / C);
                    rows_out = 0; o_cmd = 0;
                    cmd_valid <= 1'b1;
                end else begin
                    $display("TOP cycles=%0d", last_any - first_cycle + 1);
                    $writememh(c_file, cmem, 0, NC - 1);
                    if (NO > 0) $writememh(o_file, omem, 0, NO - 1);
                    $finish;
                end
            end
            if (cmd_valid && cmd_ready) begin
                cmd_valid <= 1'b0;
                feeding = 1;
                running = 1;
                fm0 = 0; fn0 = 0; fk = 0;
                start_cycle = cycle;
                if (ci == 0) first_cycle = cycle;
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
            if (c_valid && c_ready) begin
                row_m = c_row;
                col_n0 = c_col * C;
                for (lane = 0; lane < C; lane = lane + 1)
                    if (c_mask[lane]) cmem[CO + row_m * N + col_n0 + lane] = c_payload[lane*32 +: 32];
                rows_out = rows_out + 1;
                last_c = cycle;
                last_any = cycle;
            end
            if (o_valid && o_ready) begin
                if (o_total < NO) omem[o_total] = o_payload;
                o_total = o_total + 1;
                o_cmd = o_cmd + 1;
                last_any = cycle;
            end
            if (running && rows_out == rows_total && o_cmd == M * G) begin
                $display("TOP cmd=%0d array_cycles=%0d cycles=%0d", ci, last_c - start_cycle + 1,
                         last_any - start_cycle + 1);
                running = 0;
                ci = ci + 1;
            end
            // A gap never takes back an offered step (stream rule: valid holds until ready).
            op_valid <= feeding;
            c_ready <= stall_pct == 0 || ($random(seed) % 100 + 100) % 100 >= stall_pct;
            o_ready <= stall_pct == 0 || ($random(seed) % 100 + 100) % 100 >= stall_pct;
        end
    end
endmodule
