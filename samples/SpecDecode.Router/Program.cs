using SpecDecode.Router;

try
{
    WebApplication app = RouterApp.Build(args);
    app.Run();
    return 0;
}
catch (RouterConfigurationException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}
