using Domicile.Cli;

return await Cli.RunAsync(args);
